/**
 * The API process: Platform API, git receiver, deployer, route feed, and the
 * local runtime's instances. Thin: config → adapters → serve → drain.
 */
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { consoleLogger, ensureSecrets, loadConfig, systemClock } from "@berth/core";
import { migrate, openDb, pgEventBus } from "@berth/db";
import { createLocalRuntime } from "@berth/runtime/local/index";
import type { Runtime } from "@berth/runtime";
import { openBlobStore } from "@berth/blobstore";
import { assemblePlatformApi } from "./index.ts";


const config = loadConfig(process.env, process.cwd());
const logger = consoleLogger({ svc: "api" });
if (!config.DATABASE_URL) throw new Error("DATABASE_URL is required (npm start provides the embedded Postgres)");
const secrets = ensureSecrets(config);
const db = openDb(config.DATABASE_URL, { max: 20, onIdleError: (e) => logger.warn("postgres connection dropped", { err: e.message }) });
await migrate(db);
const events = await pgEventBus(config.DATABASE_URL, logger);
const blobs = await openBlobStore(config);
const runtime = await openRuntime();
async function openRuntime(): Promise<Runtime & { isolation: string }> {
  if (config.BERTH_RUNTIME === "kubernetes") {
    const { createKubernetesRuntime } = await import("@berth/runtime/kubernetes/index");
    const k8s = createKubernetesRuntime({
      kubeconfig: config.KUBECONFIG!,
      namespacePrefix: config.BERTH_K8S_NAMESPACE_PREFIX,
      routerNamespace: config.BERTH_K8S_ROUTER_NAMESPACE,
      registry: { host: config.BERTH_REGISTRY!, insecure: config.BERTH_REGISTRY_INSECURE, ...(config.BERTH_REGISTRY_USER ? { credentials: { username: config.BERTH_REGISTRY_USER, password: config.BERTH_REGISTRY_PASSWORD ?? "" } } : {}) },
      baseImage: config.BERTH_K8S_BASE_IMAGE!,
      clock: systemClock,
      logger: logger.child({ part: "runtime" }),
    });
    return Object.assign(k8s, { isolation: "kubernetes" });
  }
  const local = await createLocalRuntime({
    stateDir: join(config.dataDir, "runtime"),
    clock: systemClock,
    logger: logger.child({ part: "runtime" }),
    nodeBinary: process.execPath,
    preferRunc: config.BERTH_LOCAL_ISOLATION !== "process",
  });
  if (local.isolation !== "runc") logger.warn("runc unavailable: app instances run as plain processes, without isolation");
  return local;
}

const platform = assemblePlatformApi({
  db,
  clock: systemClock,
  logger,
  configKeys: secrets.configKeys,
  sources: blobs,
  events,
  runtime,
  reposDir: join(config.dataDir, "repos"),
  internalUrl: () => config.apiUrl,
  internalToken: secrets.internalToken,
  maxPushBytes: config.BERTH_MAX_SOURCE_BYTES,
  bootTimeoutMs: config.BERTH_BOOT_TIMEOUT_SECONDS * 1000,
  graceMs: config.BERTH_STOP_GRACE_SECONDS * 1000,
  releasePhaseTimeoutMs: 10 * 60_000,
  settings: {
    signupOpen: config.BERTH_SIGNUP === "open",
    baseDomain: config.BERTH_BASE_DOMAIN,
    publicUrl: config.publicUrl,
    maxBodyBytes: config.BERTH_MAX_BODY_BYTES,
    sessionTtlMs: 7 * 24 * 3600 * 1000,
    requestsPerHour: 4500,
    secureCookies: config.publicUrl.startsWith("https:"),
    dynoQuotaPerTeam: config.BERTH_DYNO_QUOTA_PER_TEAM,
    allowedSourceHosts: config.allowedSourceHosts,
    sourceOrigins: config.BERTH_S3_ENDPOINT ? [config.BERTH_S3_ENDPOINT] : [],
    signingSecret: secrets.signingSecret,
    maxSourceBytes: config.BERTH_MAX_SOURCE_BYTES,
  },
  passwordCost: { memoryKiB: config.BERTH_PASSWORD_MEMORY_KIB, iterations: 2 },
  loginLimits: { perAccount: 10, perAddress: 100, windowMs: 15 * 60_000 },
});

const server = serve({ fetch: platform.app.fetch, hostname: config.BERTH_API_HOST, port: config.BERTH_API_PORT }, (info) => {
  logger.info("api listening", { url: config.publicUrl, addr: `${info.address}:${info.port}`, isolation: runtime.isolation });
});

let stopping = false;
const drain = async () => {
  if (stopping) return;
  stopping = true;
  logger.info("api draining");
  server.close();
  platform.close();
  // Instances keep running: apps serve while the control plane restarts.
  await runtime.close();
  await events.close();
  await db.destroy();
  process.exit(0);
};
process.on("SIGTERM", () => void drain());
process.on("SIGINT", () => void drain());
