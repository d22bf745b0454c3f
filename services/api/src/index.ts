import { parseKeyRing, type Clock, type Logger } from "@berth/core";
import type { Db, EventBus } from "@berth/db";
import type { Runtime } from "@berth/runtime";
import { createApi, type ApiSettings } from "./app.ts";
import { Accounts } from "./domain/accounts.ts";
import { argon2Hasher } from "./auth/passwords.ts";
import { WindowCounter } from "./auth/ratelimit.ts";
import { ConfigStore } from "./domain/config.ts";
import type { PlatformHooks } from "./domain/hooks.ts";
import type { DynoSource } from "./domain/dynos.ts";
import type { SourceBlobs } from "./domain/sources.ts";
import { LogHub } from "./platform/logs.ts";
import { BuildLogs } from "./platform/buildlogs.ts";
import { Deployer } from "./platform/deployer.ts";
import { RouteFeed } from "./platform/routefeed.ts";
import { Scaling } from "./platform/scaling.ts";
import { GitDeployPipeline } from "./platform/gitdeploy.ts";
import { Repos } from "./git/repos.ts";
import { mountGit } from "./git/http.ts";
import { mountInternal } from "./platform/internal.ts";

export { createApi, type ApiSettings, type ApiDeps } from "./app.ts";
export type { PlatformHooks } from "./domain/hooks.ts";
export type { DynoSource } from "./domain/dynos.ts";
export type { SourceBlobs } from "./domain/sources.ts";
export { ConfigStore } from "./domain/config.ts";
export { parseKeyRing, newKeySpec } from "@berth/core";
export { LogHub, formatLogLine } from "./platform/logs.ts";
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
  sources: SourceBlobs;
  events: EventBus;
  logs?: LogHub;
  settings: ApiSettings;
  passwordCost: { memoryKiB: number; iterations: number };
  loginLimits: { perAccount: number; perAddress: number; windowMs: number };
}

/** Builds the Platform API's object graph from its capabilities. */
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
  const logs = w.logs ?? new LogHub();
  const buildLogs = new BuildLogs(w.db, w.events);
  const api = createApi(
    { db: w.db, clock: w.clock, logger: w.logger, accounts, keyring, config, requestLimiter, hooks: w.hooks, dynos: w.dynos, sources: w.sources, buildLogs, logs, settings: w.settings },
  );
  return { ...api, accounts, config, keyring, logs, buildLogs };
}

export interface PlatformApiWiring extends Omit<ApiWiring, "hooks" | "dynos"> {
  runtime: Runtime;
  reposDir: string;
  /** Where the API listens, for its own git hooks (loopback). */
  internalUrl: () => string;
  /** Secret shared with the router (route feed, wake) and git hooks. */
  internalToken: string;
  maxPushBytes: number;
  bootTimeoutMs: number;
  graceMs: number;
  releasePhaseTimeoutMs: number;
}

/**
 * The API as it runs in the platform: Platform API + git receiver + deployer +
 * route feed + scaling endpoints, on one runtime.
 */
export function assemblePlatformApi(w: PlatformApiWiring) {
  const logs = w.logs ?? new LogHub();
  const feed = new RouteFeed({ db: w.db, instances: (appId) => w.runtime.list(appId), logger: w.logger });
  // Filled in below: the deployer needs the config store the API assembles.
  let deployer!: Deployer;
  const hooks: PlatformHooks = {
    appChanged: (id) => feed.appChanged(id),
    releaseCreated: (appId, relId) => void deployer.releaseCreated(appId, relId),
    formationChanged: (id) => void deployer.formationChanged(id),
    restart: (id, which) => deployer.restart(id, which),
    appDeleted: (id) => void deployer.remove(id),
    buildQueued: (buildId) => void w.events.publish({ kind: "build.queued", buildId }),
  };
  const assembled = assembleApi({ ...w, logs, hooks, dynos: { list: (appId) => w.runtime.list(appId) } });
  deployer = new Deployer({
    db: w.db,
    runtime: w.runtime,
    config: assembled.config,
    clock: w.clock,
    logger: w.logger,
    routes: feed,
    logs,
    bootTimeoutMs: w.bootTimeoutMs,
    graceMs: w.graceMs,
    releasePhaseTimeoutMs: w.releasePhaseTimeoutMs,
  });
  const scaling = new Scaling({ db: w.db, runtime: w.runtime, deployer, routes: feed });
  const scheme = w.settings.baseDomain.endsWith("localhost") ? "http" : "https";
  const pipeline = new GitDeployPipeline({ db: w.db, events: w.events, sources: w.sources, buildLogs: assembled.buildLogs, deployer, logger: w.logger, publicUrl: w.settings.publicUrl, baseDomain: w.settings.baseDomain, webScheme: scheme });
  const repos = new Repos({ root: w.reposDir, maxPushBytes: w.maxPushBytes });
  // Git and internal endpoints join the same Hono app; they need the deployer built above.
  mountGit(assembled.app, {
    db: w.db,
    accounts: assembled.accounts,
    repos,
    deploys: pipeline,
    logger: w.logger,
    get internalUrl() {
      return w.internalUrl();
    },
    hookToken: w.internalToken,
    maxPushBytes: w.maxPushBytes,
  });
  mountInternal(assembled.app, { db: w.db, feed, scaling, logs, logger: w.logger, internalToken: w.internalToken });
  // Builds finished by the builder process become releases here.
  const offEvents = w.events.subscribe((e) => {
    if (e.kind !== "build.finished") return;
    if (e.appId) logs.push({ appId: e.appId, at: new Date(w.clock.now()), source: "app", dyno: "api", text: `Build ${e.buildId.slice(0, 8)} ${e.status}` });
    void deployer.onBuildFinished(e.buildId).catch((err: unknown) => w.logger.error("release after build failed", { build: e.buildId, err }));
  });
  // Instances changing state (crash, boot, freeze) change the routes.
  const offRuntime = w.runtime.subscribe((e) => {
    if (e.kind === "instance") feed.appChanged(e.instance.appId);
    else logs.push(e.line);
  });
  return {
    ...assembled,
    feed,
    deployer,
    scaling,
    repos,
    close() {
      offEvents();
      offRuntime();
    },
  };
}
