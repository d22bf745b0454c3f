import { randomInt } from "node:crypto";
import { Conflict, Invalid, validateAppName, type Clock } from "@berth/core";
import { isUniqueViolation, type Db } from "@berth/db";
import { appFor, appQuery, lockApp, type AppRecord } from "./access.ts";

const ADJECTIVES = ["calm", "brisk", "quiet", "sunny", "salty", "steady", "bright", "gentle", "swift", "tidal"];
const NOUNS = ["harbor", "anchor", "mooring", "jetty", "wharf", "quay", "buoy", "keel", "dock", "pier"];

export function generateAppName(): string {
  return `${ADJECTIVES[randomInt(ADJECTIVES.length)]}-${NOUNS[randomInt(NOUNS.length)]}-${randomInt(10000, 99999)}`;
}

export async function createApp(db: Db, input: { userId: string; teamId: string; name?: string | undefined; stack?: string | undefined; region?: string | undefined }): Promise<AppRecord> {
  const name = input.name === undefined ? generateAppName() : validateAppName(input.name);
  if (input.stack !== undefined && input.stack !== "berth-24" && input.stack !== "heroku-24") throw new Invalid(`Stack ${input.stack} is not available; use berth-24.`);
  try {
    const id = await db.transaction().execute(async (tx) => {
      const app = await tx.insertInto("apps").values({ name, team_id: input.teamId, owner_id: input.userId, region: input.region ?? "local" }).returning("id").executeTakeFirstOrThrow();
      // v1, like Heroku: an app starts with an initial, empty release.
      const rel = await tx.insertInto("releases").values({ app_id: app.id, version: 1, build_id: null, config_version: 0, description: "Initial release", user_id: input.userId }).returning("id").executeTakeFirstOrThrow();
      await tx.insertInto("release_outcomes").values({ release_id: rel.id, status: "succeeded", reason: null }).execute();
      return app.id;
    });
    return appFor(db, input.userId, id, "read");
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`Name ${name} is already taken.`);
    throw e;
  }
}

export function listApps(db: Db, userId: string, filter?: { teamId?: string; personalOnly?: boolean }): Promise<AppRecord[]> {
  let q = appQuery(db, userId);
  if (filter?.teamId) q = q.where("apps.team_id", "=", filter.teamId);
  if (filter?.personalOnly) q = q.where("teams.personal", "=", true);
  return q.orderBy("apps.name").execute() as Promise<AppRecord[]>;
}

export interface AppPatch {
  name?: string | undefined;
  maintenance?: boolean | undefined;
  build_stack?: string | undefined;
  min_instances?: number | undefined;
  max_instances?: number | undefined;
  target_concurrency?: number | undefined;
  idle_freeze_seconds?: number | undefined;
  idle_stop_seconds?: number | undefined;
  request_timeout_seconds?: number | undefined;
  health_check_path?: string | null | undefined;
}

export async function updateApp(db: Db, app: AppRecord, patch: AppPatch, clock: Clock, userId: string): Promise<AppRecord> {
  const set: Record<string, unknown> = { updated_at: new Date(clock.now()) };
  if (patch.name !== undefined) set.name = validateAppName(patch.name);
  if (patch.maintenance !== undefined) set.maintenance = patch.maintenance;
  if (patch.build_stack !== undefined && patch.build_stack !== "berth-24" && patch.build_stack !== "heroku-24") {
    throw new Invalid(`Stack ${patch.build_stack} is not available; use berth-24.`);
  }
  for (const k of ["min_instances", "max_instances", "target_concurrency", "idle_freeze_seconds", "idle_stop_seconds", "request_timeout_seconds"] as const) {
    if (patch[k] !== undefined) set[k] = patch[k];
  }
  if (patch.health_check_path !== undefined) {
    if (patch.health_check_path !== null && !/^\/[\x21-\x7e]{0,200}$/.test(patch.health_check_path)) throw new Invalid("health_check_path must be a path starting with /.");
    set.health_check_path = patch.health_check_path;
  }
  const min = (set.min_instances as number | undefined) ?? app.min_instances;
  const max = (set.max_instances as number | undefined) ?? app.max_instances;
  if (min > max) throw new Invalid("min_instances cannot exceed max_instances.");
  const freeze = (set.idle_freeze_seconds as number | undefined) ?? app.idle_freeze_seconds;
  const stop = (set.idle_stop_seconds as number | undefined) ?? app.idle_stop_seconds;
  if (freeze > stop) throw new Invalid("idle_freeze_seconds cannot exceed idle_stop_seconds.");
  try {
    await db.updateTable("apps").set(set).where("id", "=", app.id).execute();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`Name ${String(set.name)} is already taken.`);
    throw e;
  }
  return appFor(db, userId, app.id, "read");
}

export async function deleteApp(db: Db, app: AppRecord): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await lockApp(app.id).execute(tx);
    await tx.deleteFrom("apps").where("id", "=", app.id).execute();
  });
}

export async function transferApp(db: Db, app: AppRecord, toTeamId: string, clock: Clock, userId: string): Promise<AppRecord> {
  await db.updateTable("apps").set({ team_id: toTeamId, updated_at: new Date(clock.now()) }).where("id", "=", app.id).execute();
  return appFor(db, userId, app.id, "read");
}
