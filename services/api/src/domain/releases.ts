import { sql } from "kysely";
import { NotFound } from "@berth/core";
import type { Db } from "@berth/db";
import { isUuid, lockApp } from "./access.ts";
import type { ConfigStore } from "./config.ts";

export interface ReleaseRow {
  id: string;
  app_id: string;
  version: number;
  build_id: string | null;
  config_version: number;
  description: string;
  user_id: string | null;
  user_email: string | null;
  created_at: Date;
  status: "pending" | "succeeded" | "failed";
  reason: string | null;
  settled_at: Date | null;
}

export function releaseQuery(db: Db) {
  return db
    .selectFrom("releases as r")
    .leftJoin("release_outcomes as o", "o.release_id", "r.id")
    .leftJoin("users as u", "u.id", "r.user_id")
    .selectAll("r")
    .select([
      "u.email as user_email",
      sql<"pending" | "succeeded" | "failed">`coalesce(o.status, 'pending')`.as("status"),
      "o.reason as reason",
      "o.created_at as settled_at",
    ]);
}

export async function listReleases(db: Db, appId: string): Promise<ReleaseRow[]> {
  return (await releaseQuery(db).where("r.app_id", "=", appId).orderBy("r.version").execute()) as ReleaseRow[];
}

export async function getRelease(db: Db, appId: string, idOrVersion: string): Promise<ReleaseRow> {
  const q = releaseQuery(db).where("r.app_id", "=", appId);
  const v = /^v?(\d{1,9})$/.exec(idOrVersion);
  const row = v ? await q.where("r.version", "=", Number(v[1])).executeTakeFirst() : isUuid(idOrVersion) ? await q.where("r.id", "=", idOrVersion).executeTakeFirst() : undefined;
  if (!row) throw new NotFound("release");
  return row as ReleaseRow;
}

/** The release serving now: the newest that succeeded. */
export async function currentRelease(db: Db, appId: string): Promise<ReleaseRow | undefined> {
  return (await releaseQuery(db).where("r.app_id", "=", appId).where("o.status", "=", "succeeded").orderBy("r.version", "desc").limit(1).executeTakeFirst()) as ReleaseRow | undefined;
}

/** Appends a release with the next version number (serialised per app). */
export async function appendRelease(
  db: Db,
  input: { appId: string; buildId: string | null; configVersion: number; description: string; userId: string | null },
): Promise<{ id: string; version: number }> {
  const run = async (tx: Db) => {
    await lockApp(input.appId).execute(tx);
    const last = await tx.selectFrom("releases").select((eb) => eb.fn.max("version").as("v")).where("app_id", "=", input.appId).executeTakeFirst();
    const version = Number(last?.v ?? 0) + 1;
    return tx
      .insertInto("releases")
      .values({ app_id: input.appId, version, build_id: input.buildId, config_version: input.configVersion, description: input.description, user_id: input.userId })
      .returning(["id", "version"])
      .executeTakeFirstOrThrow();
  };
  return db.isTransaction ? run(db) : db.transaction().execute(run);
}

/** Records how a release ended. Each release settles once; later calls are ignored. */
export async function settleRelease(db: Db, releaseId: string, status: "succeeded" | "failed", reason: string | null): Promise<void> {
  await db.insertInto("release_outcomes").values({ release_id: releaseId, status, reason }).onConflict((oc) => oc.column("release_id").doNothing()).execute();
  if (status === "succeeded") {
    await db.updateTable("apps").set({ released_at: new Date() }).where("id", "=", db.selectFrom("releases").select("app_id").where("id", "=", releaseId)).execute();
  }
}

/** The newest release that has a build: config changes re-release it with the new config. */
export async function latestBuiltRelease(db: Db, appId: string): Promise<ReleaseRow | undefined> {
  return (await releaseQuery(db).where("r.app_id", "=", appId).where("r.build_id", "is not", null).where(sql<boolean>`coalesce(o.status, 'pending') <> 'failed'`).orderBy("r.version", "desc").limit(1).executeTakeFirst()) as ReleaseRow | undefined;
}

/** Rollback: a new release with an old release's build and config, no rebuild. */
export async function rollback(db: Db, config: ConfigStore, appId: string, target: ReleaseRow, userId: string) {
  return db.transaction().execute(async (tx) => {
    await lockApp(appId).execute(tx);
    const configVersion = await config.restore(tx, appId, target.config_version);
    return appendRelease(tx, { appId, buildId: target.build_id, configVersion, description: `Rollback to v${target.version}`, userId });
  });
}
