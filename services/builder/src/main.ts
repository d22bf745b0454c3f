/** The builder process: takes builds from the queue and turns sources into images. */
import { hostname } from "node:os";
import { join } from "node:path";
import { consoleLogger, ensureSecrets, loadConfig, parseKeyRing, systemClock } from "@berth/core";
import { appConfigVars, openDb, pgEventBus } from "@berth/db";
import { openBlobStore } from "@berth/blobstore";
import { bwrapAvailable, bwrapExec, defaultOrder, spawnExec, trustEnv } from "@berth/buildpacks";
import { BuilderService, BuildQueue } from "./index.ts";
import { buildLimits } from "./limits.ts";

const config = loadConfig(process.env, process.cwd());
const logger = consoleLogger({ svc: "builder" });
if (!config.DATABASE_URL) throw new Error("DATABASE_URL is required (npm start provides the embedded Postgres)");
const db = openDb(config.DATABASE_URL, { max: 10, onIdleError: (e) => logger.warn("postgres connection dropped", { err: e.message }) });
const events = await pgEventBus(config.DATABASE_URL, logger);
const sources = await openBlobStore(config);
// The api's key ring: the builder decrypts config vars for build-time env.
const keys = parseKeyRing(ensureSecrets(config).configKeys);
const sandboxed = await bwrapAvailable();
const limits = buildLimits(config);
if (!sandboxed) logger.warn("bubblewrap unavailable: buildpacks run as plain processes, without a sandbox");
const service = new BuilderService(
  {
    db,
    configVars: appConfigVars(db, keys),
    events,
    queue: new BuildQueue(db, systemClock, `${hostname()}:${process.pid}`),
    sources,
    logger,
    clock: systemClock,
    layoutDir: join(config.dataDir, "images"),
    cacheDir: join(config.dataDir, "build-cache"),
    workDir: join(config.dataDir, "builds"),
    order: defaultOrder(),
    // Without bubblewrap the same cgroup limits still apply to the plain processes.
    exec: sandboxed ? bwrapExec({ passEnv: trustEnv(process.env), ...limits }) : spawnExec({ passEnv: trustEnv(process.env), ...limits }),
    registry: config.BERTH_REGISTRY
      ? {
          host: config.BERTH_REGISTRY,
          insecure: config.BERTH_REGISTRY_INSECURE,
          ...(config.BERTH_REGISTRY_USER ? { credentials: { username: config.BERTH_REGISTRY_USER, password: config.BERTH_REGISTRY_PASSWORD ?? "" } } : {}),
        }
      : undefined,
    limits: { sourceBytes: config.BERTH_MAX_SOURCE_BYTES, sourceEntries: 100_000, buildTimeoutMs: config.BERTH_BUILD_TIMEOUT_SECONDS * 1000, logLines: 20_000, imageBytes: config.BERTH_MAX_IMAGE_BYTES },
    heartbeatMs: 2000,
  },
  { concurrency: config.BERTH_BUILD_CONCURRENCY, pollMs: 2000, reapEveryMs: 5000, staleMs: 30_000, maxAttempts: 2 },
);
logger.info("builder ready", {
  concurrency: config.BERTH_BUILD_CONCURRENCY,
  sandbox: sandboxed ? "bubblewrap" : "none",
  limits: { memory_mb: config.BERTH_BUILD_MEMORY_MB, cpus: config.BERTH_BUILD_CPUS, pids: config.BERTH_BUILD_PIDS },
});

const drain = async () => {
  await service.stop();
  await events.close();
  await db.destroy();
  process.exit(0);
};
process.on("SIGTERM", () => void drain());
process.on("SIGINT", () => void drain());
