import { sql } from "kysely";
import { Forbidden, NotFound } from "@berth/core";
import type { Db, Role } from "@berth/db";

/** What an operation needs: read (any member), write (member or admin), admin. */
export type Level = "read" | "write" | "admin";

const roleRank: Record<Role, number> = { viewer: 0, member: 1, admin: 2 };
const levelRank: Record<Level, number> = { read: 0, write: 1, admin: 2 };

export function allows(role: Role, level: Level): boolean {
  return roleRank[role] >= levelRank[level];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(s: string): boolean {
  return UUID.test(s);
}

export interface AppRecord {
  id: string;
  name: string;
  team_id: string;
  team_name: string;
  team_personal: boolean;
  owner_id: string;
  owner_email: string;
  maintenance: boolean;
  stack: string;
  region: string;
  min_instances: number;
  max_instances: number;
  target_concurrency: number;
  idle_freeze_seconds: number;
  idle_stop_seconds: number;
  request_timeout_seconds: number;
  health_check_path: string | null;
  config_version: number;
  released_at: Date | null;
  created_at: Date;
  updated_at: Date;
  role: Role;
}

export function appQuery(db: Db, userId: string) {
  return db
    .selectFrom("apps")
    .innerJoin("teams", "teams.id", "apps.team_id")
    .innerJoin("users as owner", "owner.id", "apps.owner_id")
    .innerJoin("team_members as m", (j) => j.onRef("m.team_id", "=", "apps.team_id").on("m.user_id", "=", userId))
    .selectAll("apps")
    .select(["teams.name as team_name", "teams.personal as team_personal", "owner.email as owner_email", "m.role as role"]);
}

/**
 * Loads an app by id or name for a user. An app the user cannot see answers
 * NotFound — never revealing that it exists; one the user sees but may not change
 * at `level` answers Forbidden.
 */
export async function appFor(db: Db, userId: string, idOrName: string, level: Level): Promise<AppRecord> {
  const q = appQuery(db, userId);
  const row = await (isUuid(idOrName) ? q.where("apps.id", "=", idOrName) : q.where("apps.name", "=", idOrName.toLowerCase())).executeTakeFirst();
  if (!row) throw new NotFound("app");
  if (!allows(row.role, level)) throw new Forbidden(`You need the ${level === "admin" ? "admin" : "member"} role on this app's team to do that.`);
  return row as AppRecord;
}

export interface TeamRecord {
  id: string;
  name: string;
  personal: boolean;
  plan: string;
  created_at: Date;
  updated_at: Date;
  role: Role;
}

/** Loads a (non-personal) team by id or name for a member, with the same NotFound/Forbidden rule. */
export async function teamFor(db: Db, userId: string, idOrName: string, level: Level): Promise<TeamRecord> {
  const q = db
    .selectFrom("teams")
    .innerJoin("team_members as m", (j) => j.onRef("m.team_id", "=", "teams.id").on("m.user_id", "=", userId))
    .selectAll("teams")
    .select("m.role as role")
    .where("teams.personal", "=", false);
  const row = await (isUuid(idOrName) ? q.where("teams.id", "=", idOrName) : q.where("teams.name", "=", idOrName.toLowerCase())).executeTakeFirst();
  if (!row) throw new NotFound("team");
  if (!allows(row.role, level)) throw new Forbidden(`You need the ${level === "admin" ? "admin" : "member"} role on this team to do that.`);
  return row as TeamRecord;
}

export async function personalTeamId(db: Db, userId: string): Promise<string> {
  const row = await db
    .selectFrom("teams")
    .innerJoin("team_members as m", "m.team_id", "teams.id")
    .select("teams.id")
    .where("m.user_id", "=", userId)
    .where("teams.personal", "=", true)
    .executeTakeFirstOrThrow();
  return row.id;
}

/** Serialises work on one app (release numbering, deploys) with a transaction-scoped advisory lock. */
export function lockApp(appId: string) {
  return sql`SELECT pg_advisory_xact_lock(hashtext(${appId}))`;
}
