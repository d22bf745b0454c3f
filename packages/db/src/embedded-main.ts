/**
 * Child process that owns one embedded Postgres: starts it, prints
 * {"url": ...} on stdout, stops it on SIGTERM/SIGINT or when the parent goes away.
 * Usage: node embedded-main.ts <dir> <fast|durable> <port|0>
 */
import { silentLogger } from "@berth/core";
import { startEmbeddedPostgres } from "./embedded.ts";

const [dir, mode, portArg] = process.argv.slice(2);
if (!dir) throw new Error("usage: embedded-main.ts <dir> <fast|durable> <port>");
const port = Number(portArg) || undefined;
const pg = await startEmbeddedPostgres({ dir, logger: silentLogger, unsafeFast: mode === "fast", ...(port ? { port } : {}) });
process.stdout.write(JSON.stringify({ url: pg.url }) + "\n");
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await pg.stop().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
// The parent died without stopping us (its stdout pipe closes).
process.stdout.on("error", () => void stop());
setInterval(() => {
  if (process.ppid === 1) void stop();
}, 1000).unref();
