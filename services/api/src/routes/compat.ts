import type { ApiDeps } from "../app.ts";
import { paginate } from "../http/range.ts";
import { iso } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor, teamFor } from "../domain/access.ts";
import { listMembers } from "../domain/teams.ts";

/**
 * Heroku resources Berth answers truthfully so Heroku's tooling works: an app has
 * no add-ons and no SNI endpoints here (TLS is terminated in front of the router),
 * teams have no feature flags, and an app's collaborators are its team's members.
 */
export function compatRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db } = deps;

  t.get("/apps/:app/addons", {
    auth: "user",
    scope: { app: "read" },
    summary: "Add-ons (Berth has none: always empty)",
    async handler(c) {
      await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      return c.json([]);
    },
  });

  t.get("/apps/:app/sni-endpoints", {
    auth: "user",
    scope: { app: "read" },
    summary: "SNI endpoints (none: TLS is terminated in front of the router)",
    async handler(c) {
      await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      return c.json([]);
    },
  });

  t.get("/teams/:team/features", {
    auth: "user",
    scope: { team: "read" },
    summary: "Team feature flags (none)",
    async handler(c) {
      await teamFor(db, c.get("userId"), c.req.param("team")!, "read");
      return c.json([]);
    },
  });

  t.get("/apps/:app/collaborators", {
    auth: "user",
    scope: { app: "read" },
    summary: "Who can work on the app: the members of its team",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const members = await listMembers(db, app.team_id);
      const rows = members.map((m) => ({
        id: m.user_id,
        app: { id: app.id, name: app.name },
        permissions: [],
        role: app.team_personal ? "owner" : m.role,
        user: { id: m.user_id, email: m.email, federated: false },
        created_at: iso(m.created_at),
        updated_at: iso(m.updated_at),
      }));
      return paginate(c, rows, { fields: ["id"], defaultField: "id" });
    },
  });
}
