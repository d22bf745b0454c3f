import { sql } from "kysely";
import { Invalid, TooLarge, type Clock, type KeyRing } from "@berth/core";
import { readConfigVersion, type ConfigVars, type Db } from "@berth/db";
import { lockApp } from "./access.ts";

export type { ConfigVars };

const KEY = /^[A-Za-z_][A-Za-z0-9_]{0,199}$/;
/** Set by the platform for every dyno; users cannot override them. */
const RESERVED = new Set(["PORT", "DYNO"]);
/** Heroku's limit on the total size of an app's config vars. */
export const CONFIG_MAX_BYTES = 64 * 1024;

/**
 * Config vars are stored as immutable, encrypted snapshots: version N of an app's
 * config is one AES-256-GCM blob, its additional data binding it to the app.
 */
export class ConfigStore {
  readonly #db: Db;
  readonly #keys: KeyRing;
  readonly #clock: Clock;
  constructor(db: Db, keys: KeyRing, clock: Clock) {
    this.#db = db;
    this.#keys = keys;
    this.#clock = clock;
  }

  async read(appId: string, version: number, db: Db = this.#db): Promise<ConfigVars> {
    return readConfigVersion(db, this.#keys, appId, version);
  }

  /** Applies changes (null unsets) and returns the new version; 0 changes keep the version. */
  async patch(appId: string, changes: Record<string, string | null>): Promise<{ vars: ConfigVars; version: number; changed: string[] }> {
    for (const [k, v] of Object.entries(changes)) {
      if (!KEY.test(k)) throw new Invalid(`Invalid config var name ${JSON.stringify(k.slice(0, 50))}: use letters, digits and underscores, not starting with a digit.`);
      if (RESERVED.has(k)) throw new Invalid(`${k} is set by the platform and cannot be changed.`);
      if (v !== null && typeof v !== "string") throw new Invalid(`Config var ${k} must be a string or null.`);
    }
    return this.#db.transaction().execute(async (tx) => {
      await lockApp(appId).execute(tx);
      const app = await tx.selectFrom("apps").select("config_version").where("id", "=", appId).executeTakeFirstOrThrow();
      const vars = await this.read(appId, app.config_version, tx);
      const changed: string[] = [];
      for (const [k, v] of Object.entries(changes)) {
        if (v === null) {
          if (k in vars) changed.push(k);
          delete vars[k];
        } else if (vars[k] !== v) {
          vars[k] = v;
          changed.push(k);
        }
      }
      if (changed.length === 0) return { vars, version: app.config_version, changed };
      const version = await this.#insert(tx, appId, app.config_version + 1, vars);
      return { vars, version, changed };
    });
  }

  /** Makes an older snapshot current again (rollback), as a new version. Runs inside the caller's transaction. */
  async restore(tx: Db, appId: string, fromVersion: number): Promise<number> {
    const app = await tx.selectFrom("apps").select("config_version").where("id", "=", appId).executeTakeFirstOrThrow();
    if (fromVersion === app.config_version) return fromVersion;
    return this.#insert(tx, appId, app.config_version + 1, await this.read(appId, fromVersion, tx));
  }

  async #insert(tx: Db, appId: string, version: number, vars: ConfigVars): Promise<number> {
    const plain = Buffer.from(JSON.stringify(vars));
    if (plain.length > CONFIG_MAX_BYTES) throw new TooLarge(`Config vars may total at most ${CONFIG_MAX_BYTES / 1024} KiB.`);
    const enc = this.#keys.encrypt(plain, appId);
    await tx.insertInto("config_versions").values({ app_id: appId, version, key_id: enc.keyId, nonce: enc.nonce, ciphertext: enc.ciphertext }).execute();
    await tx.updateTable("apps").set({ config_version: version, updated_at: new Date(this.#clock.now()) }).where("id", "=", appId).execute();
    return version;
  }

  /** Re-encrypts every snapshot not under the current key. Plaintext never changes. */
  async rotate(): Promise<number> {
    let n = 0;
    for (;;) {
      const rows = await this.#db.selectFrom("config_versions").selectAll().where("key_id", "!=", this.#keys.currentId).limit(500).execute();
      if (rows.length === 0) return n;
      for (const r of rows) {
        const plain = this.#keys.decrypt(r.key_id, r.nonce, r.ciphertext, r.app_id);
        const enc = this.#keys.encrypt(plain, r.app_id);
        await this.#db
          .updateTable("config_versions")
          .set({ key_id: enc.keyId, nonce: enc.nonce, ciphertext: enc.ciphertext })
          .where("app_id", "=", r.app_id)
          .where("version", "=", r.version)
          .where("key_id", "=", r.key_id)
          .execute();
        n++;
      }
    }
  }
}

export { sql };
