import { z } from "zod";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { paginate } from "../http/range.ts";
import { appShape, memberShape, teamShape } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { teamFor } from "../domain/access.ts";
import { createTeam, deleteTeam, listMembers, listTeams, parseRole, putMember, removeMember, renameTeam } from "../domain/teams.ts";
import { listApps } from "../domain/apps.ts";
import { webScheme } from "./apps.ts";

const member = z.object({ email: z.string().max(320), role: z.string() });

export function teamRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, clock } = deps;

  t.get("/teams", {
    auth: "user",
    summary: "Teams you are a member of",
    async handler(c) {
      const teams = (await listTeams(db, c.get("userId"))).map(teamShape);
      return paginate(c, teams, { fields: ["id", "name"], defaultField: "name" });
    },
  });

  t.post("/teams", {
    auth: "user",
    summary: "Create a team; you become its admin",
    status: 201,
    async handler(c) {
      const body = await readJson(c, z.object({ name: z.string().max(100) }));
      return c.json(teamShape(await createTeam(db, c.get("userId"), body.name)), 201);
    },
  });

  t.get("/teams/:team", {
    auth: "user",
    scope: { team: "read" },
    summary: "Team info",
    async handler(c) {
      return c.json(teamShape(await teamFor(db, c.get("userId"), c.req.param("team")!, "read")));
    },
  });

  t.patch("/teams/:team", {
    auth: "user",
    scope: { team: "admin" },
    summary: "Rename a team",
    async handler(c) {
      const team = await teamFor(db, c.get("userId"), c.req.param("team")!, "admin");
      const body = await readJson(c, z.object({ name: z.string().max(100).optional() }));
      return c.json(teamShape(body.name ? await renameTeam(db, team, body.name, clock) : team));
    },
  });

  t.delete("/teams/:team", {
    auth: "user",
    scope: { team: "admin" },
    summary: "Delete a team that has no apps",
    async handler(c) {
      const team = await teamFor(db, c.get("userId"), c.req.param("team")!, "admin");
      await deleteTeam(db, team);
      return c.json(teamShape(team));
    },
  });

  t.get("/teams/:team/members", {
    auth: "user",
    scope: { team: "read" },
    summary: "Team members",
    async handler(c) {
      const team = await teamFor(db, c.get("userId"), c.req.param("team")!, "read");
      const rows = (await listMembers(db, team.id)).map(memberShape);
      return paginate(c, rows, { fields: ["email", "id"], defaultField: "email" });
    },
  });

  for (const [method, mode] of [["put", "upsert"], ["post", "create"], ["patch", "update"]] as const) {
    t[method]("/teams/:team/members", {
      auth: "user",
      scope: { team: "admin" },
      summary: mode === "upsert" ? "Add a member or change a role" : mode === "create" ? "Add a member" : "Change a member's role",
      status: mode === "create" ? 201 : 200,
      async handler(c) {
        const team = await teamFor(db, c.get("userId"), c.req.param("team")!, "admin");
        const body = await readJson(c, member);
        const m = await putMember(db, team.id, body.email, parseRole(body.role), clock, mode);
        return c.json(memberShape(m), mode === "create" ? 201 : 200);
      },
    });
  }

  t.delete("/teams/:team/members/:member", {
    auth: "user",
    scope: { team: "admin" },
    summary: "Remove a member",
    async handler(c) {
      const team = await teamFor(db, c.get("userId"), c.req.param("team")!, "admin");
      return c.json(memberShape(await removeMember(db, team.id, decodeURIComponent(c.req.param("member")!))));
    },
  });

  t.get("/teams/:team/apps", {
    auth: "user",
    scope: { team: "read" },
    summary: "The team's apps",
    async handler(c) {
      const team = await teamFor(db, c.get("userId"), c.req.param("team")!, "read");
      const apps = (await listApps(db, c.get("userId"), { teamId: team.id })).map((a) => appShape(a, { ...deps.settings, webScheme: webScheme(deps) }));
      return paginate(c, apps, { fields: ["id", "name"], defaultField: "name" });
    },
  });
}
