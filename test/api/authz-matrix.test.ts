/**
 * The authorization matrix: every route of the route table × anonymous, viewer,
 * member, admin and a user of another team. Generated from the table, so a new
 * route is covered the moment it exists; a route with a scope it cannot be fed
 * fixtures for fails here until it is given some.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestApi, type TestApi } from "../harness/api.ts";
import type { RouteDef } from "../../services/api/src/http/routes.ts";

let api: TestApi;
let admin: { token: string; email: string; id: string };
let member: typeof admin;
let viewer: typeof admin;
let outsider: typeof admin;
const TEAM = "matrix-team";
let n = 0;

beforeAll(async () => {
  // Every seeded app runs a web dyno; the quota is tested elsewhere.
  api = await startTestApi({ settings: { dynoQuotaPerTeam: 10_000 } });
  [admin, member, viewer, outsider] = await Promise.all([api.user(), api.user(), api.user(), api.user()]);
  expect((await api.call("POST", "/teams", { token: admin.token, body: { name: TEAM } })).status).toBe(201);
  for (const [u, role] of [[member, "member"], [viewer, "viewer"]] as const) {
    expect((await api.call("PUT", `/teams/${TEAM}/members`, { token: admin.token, body: { email: u.email, role } })).status).toBe(200);
  }
  // The outsider has a team and an app of their own.
  await api.call("POST", "/teams", { token: outsider.token, body: { name: "outsider-team" } });
});
afterAll(async () => api?.close());

/** A fresh app in TEAM with one of everything a route can point at. */
async function seedApp() {
  const name = `matrix-app-${++n}`;
  const res = await api.call("POST", "/teams/apps", { token: admin.token, body: { name, team: TEAM } });
  expect(res.status).toBe(201);
  const appId = res.body.id as string;
  await api.db.insertInto("formations").values({ app_id: appId, type: "web", command: "npm start", quantity: 1 }).execute();
  await api.db.insertInto("domains").values({ app_id: appId, hostname: `www.${name}.example.test`, kind: "custom", cname: null }).execute();
  const team = await api.db.selectFrom("teams").select("id").where("name", "=", TEAM).executeTakeFirstOrThrow();
  const build = await api.db.insertInto("builds").values({ app_id: appId, team_id: team.id, user_id: admin.id, source_url: "https://github.com/x.tgz", status: "succeeded" }).returning("id").executeTakeFirstOrThrow();
  const rel = await api.db.insertInto("releases").values({ app_id: appId, version: 2, build_id: build.id, config_version: 0, description: "Deploy", user_id: admin.id }).returning("id").executeTakeFirstOrThrow();
  await api.db.insertInto("release_outcomes").values({ release_id: rel.id, status: "succeeded", reason: null }).execute();
  api.instances.set(appId, [{ name: "web.1", appId, type: "web", release: 2, state: "up", startedAt: new Date(), restarts: 0, size: "basic" }]);
  return { name, appId, buildId: build.id, hostname: `www.${name}.example.test` };
}

async function seedTeam() {
  const name = `matrix-t-${++n}`;
  expect((await api.call("POST", "/teams", { token: admin.token, body: { name } })).status).toBe(201);
  for (const [u, role] of [[member, "member"], [viewer, "viewer"]] as const) {
    await api.call("PUT", `/teams/${name}/members`, { token: admin.token, body: { email: u.email, role } });
  }
  return name;
}

async function throwawayMember(team: string) {
  const u = await api.user();
  await api.call("PUT", `/teams/${team}/members`, { token: admin.token, body: { email: u.email, role: "viewer" } });
  return u;
}

/** Fills a route's path and body with fixtures that make an allowed call succeed. */
async function prepare(def: RouteDef): Promise<{ path: string; body?: unknown }> {
  const teamDestructive = def.path.match(/^\/(teams|organizations)\/:team$/) && def.method !== "GET";
  const team = teamDestructive ? await seedTeam() : TEAM;
  const app = def.path.includes(":app") || def.path.endsWith("/teams/apps") ? await seedApp() : undefined;
  let memberEmail = "";
  if (def.path.includes(":member") || (def.path.endsWith("/members") && def.method === "PATCH")) memberEmail = (await throwawayMember(team)).email;
  if (def.path.endsWith("/members") && (def.method === "PUT" || def.method === "POST")) memberEmail = (await api.user()).email;
  const params: Record<string, string> = {
    app: app?.name ?? "",
    team,
    member: encodeURIComponent(memberEmail),
    domain: app?.hostname ?? "",
    type: "web",
    release: "2",
    build: app?.buildId ?? "",
    dyno: "web.1",
  };
  const path = def.path.replace(/:([a-z_]+)/g, (_, p: string) => {
    const v = params[p];
    if (v === undefined || v === "") throw new Error(`no fixture for :${p} in ${def.method} ${def.path}`);
    return v;
  });
  const key = `${def.method} ${def.path.replace(/^\/organizations/, "/teams")}`;
  const bodies: Record<string, unknown> = {
    "POST /teams/apps": { team, name: `matrix-new-${++n}` },
    "PATCH /apps/:app": { maintenance: false },
    "PATCH /teams/apps/:app": { owner: TEAM },
    "PATCH /apps/:app/config-vars": { FOO: "bar" },
    "POST /apps/:app/domains": { hostname: `new-${++n}.example.test` },
    "PATCH /apps/:app/formation": { updates: [{ type: "web", quantity: 1 }] },
    "PATCH /apps/:app/formation/:type": { quantity: 1 },
    "POST /apps/:app/releases": { release: 2 },
    "POST /apps/:app/builds": { source_blob: { url: "https://github.com/acme/app.tgz" } },
    "PUT /teams/:team/members": { email: memberEmail, role: "viewer" },
    "POST /teams/:team/members": { email: memberEmail, role: "viewer" },
    "PATCH /teams/:team/members": { email: memberEmail, role: "member" },
    "PATCH /teams/:team": {},
  };
  return { path, body: def.method === "GET" || def.method === "DELETE" ? undefined : (bodies[key] ?? {}) };
}

const levelOf = (def: RouteDef) => (def.scope ? ("app" in def.scope ? def.scope.app : def.scope.team) : undefined);
const allowed = { viewer: ["read"], member: ["read", "write"], admin: ["read", "write", "admin"] } as const;

describe("authorization matrix", async () => {
  // Building the table needs no database: the routes are the same in every instance.
  const probe = await startTestApi();
  const routes = probe.assembled.routes.withOrganizationAliases();
  await probe.close();

  test("covers every mounted route", () => {
    expect(routes.length).toBeGreaterThan(40);
  });

  for (const def of routes.filter((r) => r.auth !== "none")) {
    test(`${def.method} ${def.path}: anonymous → 401`, async () => {
      const path = def.path.replace(/:([a-z_]+)/g, "x");
      const r = await api.call(def.method, path, def.method === "GET" || def.method === "DELETE" ? {} : { body: {} });
      expect(r.status).toBe(401);
      expect(r.body.id).toBe("unauthorized");
    });
  }

  for (const def of routes.filter((r) => r.scope)) {
    const level = levelOf(def)!;
    test(`${def.method} ${def.path}: another team's user → 404`, async () => {
      const { path, body } = await prepare(def);
      const r = await api.call(def.method, path, { token: outsider.token, body });
      expect(r.status).toBe(404);
      expect(r.body.id).toBe("not_found");
    });
    for (const role of ["viewer", "member", "admin"] as const) {
      const ok = (allowed[role] as readonly string[]).includes(level);
      test(`${def.method} ${def.path}: ${role} → ${ok ? "2xx" : "403"}`, async () => {
        const who = { viewer, member, admin }[role];
        const { path, body } = await prepare(def);
        const r = await api.call(def.method, path, { token: who.token, body });
        if (ok) {
          expect(r.status, JSON.stringify(r.body)).toBeGreaterThanOrEqual(200);
          expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
        } else {
          expect(r.status, JSON.stringify(r.body)).toBe(403);
          expect(r.body.id).toBe("forbidden");
        }
      });
    }
  }
});
