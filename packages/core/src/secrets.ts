import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { BerthConfig } from "./config.ts";

export interface Secrets {
  /** Shared by the platform's own processes (router ↔ API, git hooks). */
  internalToken: string;
  /** Key ring for config vars at rest: `id:base64[,…]`, first current. */
  configKeys: string;
  /** Signs source and log-session URLs. */
  signingSecret: string;
}

/**
 * The platform's secrets: from the environment when set (production), else from
 * `<data dir>/secrets.json`, created on first start with fresh random values and
 * readable only by its owner.
 */
export function ensureSecrets(config: BerthConfig): Secrets {
  const file = join(config.dataDir, "secrets.json");
  let stored: Partial<Secrets> = {};
  if (existsSync(file)) stored = JSON.parse(readFileSync(file, "utf8")) as Partial<Secrets>;
  const fresh: Secrets = {
    internalToken: stored.internalToken ?? randomBytes(24).toString("base64url"),
    configKeys: stored.configKeys ?? `k1:${randomBytes(32).toString("base64")}`,
    signingSecret: stored.signingSecret ?? randomBytes(24).toString("base64url"),
  };
  if (!stored.internalToken || !stored.configKeys || !stored.signingSecret) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, JSON.stringify(fresh, null, 2), { mode: 0o600 });
  }
  return {
    internalToken: config.BERTH_INTERNAL_TOKEN ?? fresh.internalToken,
    configKeys: config.BERTH_CONFIG_KEYS ?? fresh.configKeys,
    signingSecret: config.BERTH_SIGNING_SECRET ?? fresh.signingSecret,
  };
}
