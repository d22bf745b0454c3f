/** The builder process: takes builds from the queue and turns sources into images. */
import { hostname } from "node:os";
import { join } from "node:path";
import { consoleLogger, loadConfig, systemClock } from "@berth/core";
import { openDb, pgEventBus } from "@berth/db";
import { openBlobStore } from "@berth/blobstore";
import { bwrapAvailable, bwrapExec, defaultOrder, spawnExec, trustEnv } from "@berth/buildpacks";
import { BuilderService, BuildQueue } from "./index.ts";

const config = loadConfig(process.env, process.cwd());
const logger = consoleLogger({ svc: "builder" });
if (!config.DATABASE_URL) throw new Error("DATABASE_URL is required (npm start provides the embedded Postgres)");
const db = openDb(config.DATABASE_URL, { max: 10, onIdleError: (e) => logger.warn("postgres connection dropped", { err: e.message }) });
const events = await pgEventBus(config.DATABASE_URL, logger);
const sources = await openBlobStore(config);
const sandboxed = await bwrapAvailable();
if (!sandboxed) logger.warn("bubblewrap unavailable: buildpacks run as plain processes, without a sandbox");
const service = new BuilderService(
  {
    db,
    events,
    queue: new BuildQueue(db, systemClock, `${hostname()}:${process.pid}`),
    sources,
    logger,
    clock: systemClock,
    layoutDir: join(config.dataDir, "images"),
    cacheDir: join(config.dataDir, "build-cache"),
    workDir: join(config.dataDir, "builds"),
    order: defaultOrder(),
    exec: sandboxed
      ? bwrapExec({ passEnv: trustEnv(process.env), memoryBytes: config.BERTH_BUILD_MEMORY_MB * 1024 * 1024, cpus: config.BERTH_BUILD_CPUS, pids: config.BERTH_BUILD_PIDS })
      : spawnExec({ passEnv: trustEnv(process.env) }),
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
  limits: sandboxed ? { memory_mb: config.BERTH_BUILD_MEMORY_MB, cpus: config.BERTH_BUILD_CPUS, pids: config.BERTH_BUILD_PIDS } : "none",
});

const drain = async () => {
  await service.stop();
  await events.close();
  await db.destroy();
  process.exit(0);
};
process.on("SIGTERM", () => void drain());
process.on("SIGINT", () => void drain());
