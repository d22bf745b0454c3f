import { Conflict, Invalid, NotFound, validateTeamName, type Clock } from "@berth/core";
import { isUniqueViolation, type Db, type Role } from "@berth/db";
import type { TeamRecord } from "./access.ts";
import { isUuid } from "./access.ts";

export const ROLES: readonly Role[] = ["admin", "member", "viewer"];

export function parseRole(role: unknown): Role {
  if (typeof role !== "string" || !ROLES.includes(role as Role)) throw new Invalid("Role must be one of admin, member, viewer.");
  return role as Role;
}

export async function createTeam(db: Db, userId: string, name: string): Promise<TeamRecord> {
  validateTeamName(name);
  try {
    return await db.transaction().execute(async (tx) => {
      const team = await tx.insertInto("teams").values({ name }).returningAll().executeTakeFirstOrThrow();
      await tx.insertInto("team_members").values({ team_id: team.id, user_id: userId, role: "admin" }).execute();
      return { ...team, role: "admin" as const };
    });
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`The name ${name} is already taken.`);
    throw e;
  }
}

export function listTeams(db: Db, userId: string): Promise<TeamRecord[]> {
  return db
    .selectFrom("teams")
    .innerJoin("team_members as m", "m.team_id", "teams.id")
    .selectAll("teams")
    .select("m.role as role")
    .where("m.user_id", "=", userId)
    .where("teams.personal", "=", false)
    .orderBy("teams.name")
    .execute() as Promise<TeamRecord[]>;
}

export async function renameTeam(db: Db, team: TeamRecord, name: string, clock: Clock): Promise<TeamRecord> {
  validateTeamName(name);
  try {
    const row = await db.updateTable("teams").set({ name, updated_at: new Date(clock.now()) }).where("id", "=", team.id).returningAll().executeTakeFirstOrThrow();
    return { ...row, role: team.role };
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`The name ${name} is already taken.`);
    throw e;
  }
}

export async function deleteTeam(db: Db, team: TeamRecord): Promise<void> {
  await db.transaction().execute(async (tx) => {
    const app = await tx.selectFrom("apps").select("name").where("team_id", "=", team.id).limit(1).executeTakeFirst();
    if (app) throw new Conflict(`Team ${team.name} still has apps (${app.name}…); delete or transfer them first.`);
    await tx.deleteFrom("teams").where("id", "=", team.id).execute();
  });
}

export function listMembers(db: Db, teamId: string) {
  return db
    .selectFrom("team_members as m")
    .innerJoin("users as u", "u.id", "m.user_id")
    .select(["m.user_id", "u.email", "u.name", "m.role", "m.created_at", "m.updated_at"])
    .where("m.team_id", "=", teamId)
    .orderBy("u.email")
    .execute();
}

async function userByEmailOrId(db: Db, who: string) {
  const q = db.selectFrom("users").select(["id", "email", "name"]);
  const row = await (isUuid(who) ? q.where("id", "=", who) : q.where((eb) => eb(eb.fn("lower", ["email"]), "=", who.toLowerCase()))).executeTakeFirst();
  if (!row) throw new NotFound("user");
  return row;
}

/** Adds a member, or changes the role of an existing one (PUT semantics). */
export async function putMember(db: Db, teamId: string, who: string, role: Role, clock: Clock, mode: "create" | "update" | "upsert") {
  const user = await userByEmailOrId(db, who);
  return db.transaction().execute(async (tx) => {
    const existing = await tx.selectFrom("team_members").selectAll().where("team_id", "=", teamId).where("user_id", "=", user.id).forUpdate().executeTakeFirst();
    if (existing && mode === "create") throw new Conflict(`${user.email} is already a member of this team.`);
    if (!existing && mode === "update") throw new NotFound("team member");
    if (existing) {
      if (existing.role === "admin" && role !== "admin") await assertAnotherAdmin(tx, teamId, user.id);
      await tx.updateTable("team_members").set({ role, updated_at: new Date(clock.now()) }).where("team_id", "=", teamId).where("user_id", "=", user.id).execute();
    } else {
      await tx.insertInto("team_members").values({ team_id: teamId, user_id: user.id, role }).execute();
    }
    const m = await tx.selectFrom("team_members").selectAll().where("team_id", "=", teamId).where("user_id", "=", user.id).executeTakeFirstOrThrow();
    return { ...m, email: user.email, name: user.name };
  });
}

export async function removeMember(db: Db, teamId: string, who: string) {
  const user = await userByEmailOrId(db, who);
  return db.transaction().execute(async (tx) => {
    const m = await tx.selectFrom("team_members").selectAll().where("team_id", "=", teamId).where("user_id", "=", user.id).forUpdate().executeTakeFirst();
    if (!m) throw new NotFound("team member");
    if (m.role === "admin") await assertAnotherAdmin(tx, teamId, user.id);
    await tx.deleteFrom("team_members").where("team_id", "=", teamId).where("user_id", "=", user.id).execute();
    return { ...m, email: user.email, name: user.name };
  });
}

async function assertAnotherAdmin(tx: Db, teamId: string, exceptUserId: string) {
  const other = await tx.selectFrom("team_members").select("user_id").where("team_id", "=", teamId).where("role", "=", "admin").where("user_id", "!=", exceptUserId).limit(1).executeTakeFirst();
  if (!other) throw new Conflict("A team needs at least one admin; make someone else admin first.");
}
