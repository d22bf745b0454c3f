import type { Clock, Logger } from "@berth/core";
import type { Db } from "@berth/db";
import { createApi, type ApiSettings } from "./app.ts";
import { Accounts } from "./domain/accounts.ts";
import { argon2Hasher } from "./auth/passwords.ts";
import { WindowCounter } from "./auth/ratelimit.ts";
import { ConfigStore } from "./domain/config.ts";
import { parseKeyRing } from "./domain/keyring.ts";
import type { PlatformHooks } from "./domain/hooks.ts";
import type { DynoSource } from "./domain/dynos.ts";

export { createApi, type ApiSettings, type ApiDeps } from "./app.ts";
export type { PlatformHooks } from "./domain/hooks.ts";
export type { DynoSource } from "./domain/dynos.ts";
export { ConfigStore } from "./domain/config.ts";
export { parseKeyRing, newKeySpec } from "./domain/keyring.ts";
export * as releases from "./domain/releases.ts";
export * as formation from "./domain/formation.ts";

export interface ApiWiring {
  db: Db;
  clock: Clock;
  logger: Logger;
  /** `id:base64[,id:base64…]`, first key current. */
  configKeys: string;
  hooks: PlatformHooks;
  dynos: DynoSource;
  settings: ApiSettings;
  passwordCost: { memoryKiB: number; iterations: number };
  loginLimits: { perAccount: number; perAddress: number; windowMs: number };
}

/** Builds the API's object graph from its capabilities. */
export function assembleApi(w: ApiWiring) {
  const accounts = new Accounts({
    db: w.db,
    hasher: argon2Hasher(w.passwordCost),
    clock: w.clock,
    failuresByAccount: new WindowCounter(w.clock, w.loginLimits.perAccount, w.loginLimits.windowMs),
    failuresByAddress: new WindowCounter(w.clock, w.loginLimits.perAddress, w.loginLimits.windowMs),
  });
  const keyring = parseKeyRing(w.configKeys);
  const config = new ConfigStore(w.db, keyring, w.clock);
  const requestLimiter = new WindowCounter(w.clock, w.settings.requestsPerHour, 3_600_000);
  const api = createApi({ db: w.db, clock: w.clock, logger: w.logger, accounts, keyring, config, requestLimiter, hooks: w.hooks, dynos: w.dynos, settings: w.settings });
  return { ...api, accounts, config, keyring };
}
