/**
 * Re-encrypts every config-var snapshot under the current key (the first in
 * BERTH_CONFIG_KEYS or .berth/secrets.json). Rotation: put a new key first, keep
 * the old one after it, run this, then drop the old key.
 *   BERTH_CONFIG_KEYS="k2:<new>,k1:<old>" DATABASE_URL=… npm run rotate-config-keys
 */
import { consoleLogger, ensureSecrets, loadConfig, systemClock } from "@berth/core";
import { openDb } from "@berth/db";
import { ConfigStore, parseKeyRing } from "@berth/api";

const config = loadConfig(process.env, process.cwd());
if (!config.DATABASE_URL) throw new Error("DATABASE_URL is required");
const db = openDb(config.DATABASE_URL, { max: 2 });
const n = await new ConfigStore(db, parseKeyRing(ensureSecrets(config).configKeys), systemClock).rotate();
consoleLogger({ svc: "rotate" }).info("config snapshots re-encrypted", { count: n });
await db.destroy();
