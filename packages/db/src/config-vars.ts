/**
 * Reading an app's config vars: `config_versions` rows are immutable AES-256-GCM
 * snapshots (the additional data is the app id, so a row moved to another app does
 * not decrypt). The api writes them (services/api ConfigStore); the api's deployer
 * and the builder read them through here.
 */
import type { KeyRing } from "@berth/core";
import type { Db } from "./db.ts";

export type ConfigVars = Record<string, string>;

/** Decrypts version `version` of an app's config vars; version 0 is the empty config every app starts with. */
export async function readConfigVersion(db: Db, keys: KeyRing, appId: string, version: number): Promise<ConfigVars> {
  if (version === 0) return {};
  const row = await db.selectFrom("config_versions").select(["key_id", "nonce", "ciphertext"]).where("app_id", "=", appId).where("version", "=", version).executeTakeFirstOrThrow();
  return decrypt(keys, appId, row);
}

function decrypt(keys: KeyRing, appId: string, row: { key_id: string; nonce: Buffer; ciphertext: Buffer }): ConfigVars {
  return JSON.parse(keys.decrypt(row.key_id, row.nonce, row.ciphertext, appId).toString("utf8")) as ConfigVars;
}

/**
 * The app's config vars as they are now (`apps.config_version`), in one query:
 * a config change committed after it is not seen, one committed before it is.
 */
export async function readCurrentConfig(db: Db, keys: KeyRing, appId: string): Promise<{ version: number; vars: ConfigVars }> {
  const row = await db
    .selectFrom("apps")
    .leftJoin("config_versions", (j) => j.onRef("config_versions.app_id", "=", "apps.id").onRef("config_versions.version", "=", "apps.config_version"))
    .select(["apps.config_version", "config_versions.key_id", "config_versions.nonce", "config_versions.ciphertext"])
    .where("apps.id", "=", appId)
    .executeTakeFirstOrThrow();
  if (row.config_version === 0) return { version: 0, vars: {} };
  if (row.key_id === null || row.nonce === null || row.ciphertext === null) throw new Error(`app ${appId}: config version ${row.config_version} has no config_versions row`);
  return { version: row.config_version, vars: decrypt(keys, appId, { key_id: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext }) };
}

/** The config vars of apps, as the builder's port wants them (`readCurrentConfig` bound to a database and key ring). */
export function appConfigVars(db: Db, keys: KeyRing): { current(appId: string): Promise<{ version: number; vars: ConfigVars }> } {
  return { current: (appId) => readCurrentConfig(db, keys, appId) };
}
