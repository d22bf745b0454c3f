import { Invalid, NotFound } from "@berth/core";
import type { Db } from "@berth/db";
import { isUuid } from "./access.ts";

/**
 * Where a build may fetch its source from: Berth's own blob store (a sources URL
 * of this API) or a host the operator allowed. Anything else is refused before a
 * build is queued, so a build can never be pointed at internal services.
 */
export function checkSourceUrl(raw: string, ownOrigins: readonly string[], allowedHosts: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Invalid("source_blob.url must be an absolute URL.");
  }
  if (ownOrigins.some((o) => new URL(o).origin === url.origin) && url.pathname.startsWith("/sources/")) return url.toString();
  if (url.protocol === "https:" && allowedHosts.includes(url.hostname)) return url.toString();
  throw new Invalid(`source_blob.url must come from POST /sources or an allowed host (${allowedHosts.join(", ") || "none configured"}).`);
}

export function listBuilds(db: Db, appId: string) {
  return db.selectFrom("builds").selectAll().where("app_id", "=", appId).orderBy("created_at").execute();
}

export async function getBuild(db: Db, appId: string, id: string) {
  const row = isUuid(id) ? await db.selectFrom("builds").selectAll().where("app_id", "=", appId).where("id", "=", id).executeTakeFirst() : undefined;
  if (!row) throw new NotFound("build");
  return row;
}

export function queueBuild(db: Db, input: { appId: string; teamId: string; userId: string; url: string; blobKey?: string | undefined; version?: string | undefined; checksum?: string | undefined }) {
  return db
    .insertInto("builds")
    .values({ app_id: input.appId, team_id: input.teamId, user_id: input.userId, source_url: input.url, source_blob_key: input.blobKey ?? null, source_version: input.version ?? null, source_checksum: input.checksum ?? null })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function requestCancel(db: Db, appId: string, id: string) {
  const row = await db.updateTable("builds").set({ cancel_requested: true }).where("app_id", "=", appId).where("id", "=", id).where("status", "=", "pending").returningAll().executeTakeFirst();
  return row ?? getBuild(db, appId, id);
}
