import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestApi, type TestApi } from "../harness/api.ts";
import { openApiPath } from "../../services/api/src/openapi.ts";

let api: TestApi;
let u: { token: string; email: string; id: string };
beforeAll(async () => {
  api = await startTestApi();
  u = await api.user();
});
afterAll(async () => api?.close());

describe("apps", () => {
  test("create, info by name and id, list, update, delete", async () => {
    const created = await api.call("POST", "/apps", { token: u.token, body: { name: "hello-world" } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: "hello-world",
      team: null,
      owner: { email: u.email },
      web_url: "http://hello-world.localhost/",
      maintenance: false,
      stack: { name: "berth-24" },
    });
    expect(created.body.git_url).toBe(`${api.url}/hello-world.git`);
    const byId = await api.call("GET", `/apps/${created.body.id}`, { token: u.token });
    expect(byId.body.name).toBe("hello-world");
    const list = await api.call("GET", "/apps", { token: u.token });
    expect(list.body.map((a: any) => a.name)).toContain("hello-world");
    const mine = await api.call("GET", "/users/~/apps", { token: u.token });
    expect(mine.body.map((a: any) => a.name)).toContain("hello-world");

    const patched = await api.call("PATCH", "/apps/hello-world", { token: u.token, body: { maintenance: true, min_instances: 1, idle_freeze_seconds: 10 } });
    expect(patched.body.maintenance).toBe(true);
    expect(patched.body.scaling).toMatchObject({ min_instances: 1, idle_freeze_seconds: 10 });
    expect(api.hooks.calls).toContainEqual({ hook: "appChanged", appId: created.body.id });

    const renamed = await api.call("PATCH", "/apps/hello-world", { token: u.token, body: { name: "hello-again" } });
    expect(renamed.body.name).toBe("hello-again");

    const del = await api.call("DELETE", "/apps/hello-again", { token: u.token });
    expect(del.status).toBe(200);
    expect(api.hooks.calls).toContainEqual({ hook: "appDeleted", appId: created.body.id });
    expect((await api.call("GET", "/apps/hello-again", { token: u.token })).status).toBe(404);
  });

  test("a generated name when none is given; v1 'Initial release' exists", async () => {
    const r = await api.call("POST", "/apps", { token: u.token, body: {} });
    expect(r.status).toBe(201);
    expect(r.body.name).toMatch(/^[a-z]+-[a-z]+-\d{5}$/);
    const rel = await api.call("GET", `/apps/${r.body.name}/releases`, { token: u.token });
    expect(rel.body).toHaveLength(1);
    expect(rel.body[0]).toMatchObject({ version: 1, description: "Initial release", status: "succeeded", current: true });
  });

  test.each([
    ["ab", "too short"],
    ["a".repeat(31), "too long"],
    ["1abc", "starts with a digit"],
    ["Hello", "uppercase"],
    ["hello_world", "underscore"],
    ["hello-", "ends with a dash"],
    ["../etc", "path characters"],
  ])("invalid name %s (%s) is refused with 422", async (name) => {
    const r = await api.call("POST", "/apps", { token: u.token, body: { name } });
    expect(r.status).toBe(422);
    expect(r.body.id).toBe("invalid_params");
  });

  test("reserved and duplicate names are refused", async () => {
    expect((await api.call("POST", "/apps", { token: u.token, body: { name: "api" } })).status).toBe(422);
    expect((await api.call("POST", "/apps", { token: u.token, body: { name: "taken-name" } })).status).toBe(201);
    const other = await api.user();
    const dup = await api.call("POST", "/apps", { token: other.token, body: { name: "taken-name" } });
    expect(dup.status).toBe(409);
    expect(dup.body.id).toBe("conflict");
  });

  test("wrong types and unknown stacks are refused", async () => {
    expect((await api.call("POST", "/apps", { token: u.token, body: { name: 5 } })).status).toBe(422);
    expect((await api.call("POST", "/apps", { token: u.token, body: { name: "stacky", stack: "cedar-14" } })).status).toBe(422);
    expect((await api.call("PATCH", "/apps/taken-name", { token: u.token, body: { maintenance: "yes" } })).status).toBe(422);
    expect((await api.call("PATCH", "/apps/taken-name", { token: u.token, body: { min_instances: 5, max_instances: 2 } })).status).toBe(422);
  });

  test("Range pagination answers 206 with Next-Range, and follows it", async () => {
    const pager = await api.user();
    for (let i = 0; i < 5; i++) await api.call("POST", "/apps", { token: pager.token, body: { name: `page-app-${i}` } });
    const first = await api.call("GET", "/apps", { token: pager.token, headers: { Range: "name ..; max=2" } });
    expect(first.status).toBe(206);
    expect(first.body.map((a: any) => a.name)).toEqual(["page-app-0", "page-app-1"]);
    const next = first.headers.get("Next-Range")!;
    expect(next).toBe("name page-app-2..; order=asc, max=2");
    const second = await api.call("GET", "/apps", { token: pager.token, headers: { Range: next } });
    expect(second.body.map((a: any) => a.name)).toEqual(["page-app-2", "page-app-3"]);
    const desc = await api.call("GET", "/apps", { token: pager.token, headers: { Range: "name ..; order=desc, max=10" } });
    expect(desc.status).toBe(200);
    expect(desc.body[0].name).toBe("page-app-4");
    const bad = await api.call("GET", "/apps", { token: pager.token, headers: { Range: "password ..;" } });
    expect(bad.status).toBe(400);
  });
});

describe("config vars", () => {
  test("set, read, unset with null; encrypted at rest", async () => {
    await api.call("POST", "/apps", { token: u.token, body: { name: "cfg-app" } });
    const set = await api.call("PATCH", "/apps/cfg-app/config-vars", { token: u.token, body: { DATABASE_URL: "postgres://secret-value", FOO: "1" } });
    expect(set.body).toEqual({ DATABASE_URL: "postgres://secret-value", FOO: "1" });
    const unset = await api.call("PATCH", "/apps/cfg-app/config-vars", { token: u.token, body: { FOO: null } });
    expect(unset.body).toEqual({ DATABASE_URL: "postgres://secret-value" });
    expect((await api.call("GET", "/apps/cfg-app/config-vars", { token: u.token })).body).toEqual({ DATABASE_URL: "postgres://secret-value" });
    const rows = await api.db.selectFrom("config_versions").selectAll().execute();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) expect(r.ciphertext.toString("latin1")).not.toContain("secret-value");
  });

  test("bad keys, reserved keys and non-string values are refused and change nothing", async () => {
    for (const body of [{ "1BAD": "x" }, { "BAD-KEY": "x" }, { PORT: "80" }, { FOO: 5 }, ["x"]]) {
      const r = await api.call("PATCH", "/apps/cfg-app/config-vars", { token: u.token, body });
      expect(r.status, JSON.stringify(body)).toBe(422);
    }
    expect((await api.call("GET", "/apps/cfg-app/config-vars", { token: u.token })).body).toEqual({ DATABASE_URL: "postgres://secret-value" });
  });

  test("no release before any build; a new release per change once a build exists; rollback restores build and config", async () => {
    const app = (await api.call("POST", "/apps", { token: u.token, body: { name: "rel-app" } })).body;
    await api.call("PATCH", "/apps/rel-app/config-vars", { token: u.token, body: { A: "1" } });
    expect((await api.call("GET", "/apps/rel-app/releases", { token: u.token })).body).toHaveLength(1);

    // A build succeeded and was released as v2 (the builder's part, done here directly).
    const team = await api.db.selectFrom("apps").select("team_id").where("id", "=", app.id).executeTakeFirstOrThrow();
    const build = await api.db.insertInto("builds").values({ app_id: app.id, team_id: team.team_id, user_id: u.id, source_url: "https://github.com/a.tgz", status: "succeeded" }).returning("id").executeTakeFirstOrThrow();
    const { releases } = await import("@berth/api");
    const v2 = await releases.appendRelease(api.db, { appId: app.id, buildId: build.id, configVersion: 1, description: "Deploy abc", userId: u.id });
    await releases.settleRelease(api.db, v2.id, "succeeded", null);

    await api.call("PATCH", "/apps/rel-app/config-vars", { token: u.token, body: { A: "2", B: "x" } });
    const list = await api.call("GET", "/apps/rel-app/releases", { token: u.token, headers: { Range: "version ..; order=desc, max=1" } });
    expect(list.body[0]).toMatchObject({ version: 3, description: "Set A, B config vars", status: "pending", slug: { id: build.id } });
    const rel3 = list.body[0].id;
    expect(api.hooks.calls).toContainEqual({ hook: "releaseCreated", appId: app.id, arg: rel3 });

    const rb = await api.call("POST", "/apps/rel-app/releases", { token: u.token, body: { release: "v2" } });
    expect(rb.status).toBe(201);
    expect(rb.body).toMatchObject({ version: 4, description: "Rollback to v2", slug: { id: build.id } });
    expect((await api.call("GET", "/apps/rel-app/config-vars", { token: u.token })).body).toEqual({ A: "1" });
    expect((await api.call("POST", "/apps/rel-app/releases", { token: u.token, body: { release: 1 } })).status).toBe(422);
    expect((await api.call("POST", "/apps/rel-app/releases", { token: u.token, body: { release: 99 } })).status).toBe(404);
    const info = await api.call("GET", "/apps/rel-app/releases/2", { token: u.token });
    expect(info.body).toMatchObject({ version: 2, current: true });
  });
});

describe("domains and formation", () => {
  test("custom domains: add, list with the default, refuse invalid, platform and taken names, remove", async () => {
    await api.call("POST", "/apps", { token: u.token, body: { name: "dom-app" } });
    const add = await api.call("POST", "/apps/dom-app/domains", { token: u.token, body: { hostname: "WWW.Example.COM" } });
    expect(add.status).toBe(201);
    expect(add.body).toMatchObject({ hostname: "www.example.com", kind: "custom", cname: "dom-app.localhost" });
    const list = await api.call("GET", "/apps/dom-app/domains", { token: u.token });
    expect(list.body.map((d: any) => d.hostname).sort()).toEqual(["dom-app.localhost", "www.example.com"]);
    for (const hostname of ["not a host", "-bad.example.com", "localhost", "other.localhost", "a".repeat(64) + ".com", "x"]) {
      expect((await api.call("POST", "/apps/dom-app/domains", { token: u.token, body: { hostname } })).status, hostname).toBe(422);
    }
    const other = await api.user();
    await api.call("POST", "/apps", { token: other.token, body: { name: "thief-app" } });
    expect((await api.call("POST", "/apps/thief-app/domains", { token: other.token, body: { hostname: "www.example.com" } })).status).toBe(409);
    expect((await api.call("DELETE", "/apps/dom-app/domains/www.example.com", { token: u.token })).status).toBe(200);
    expect((await api.call("GET", "/apps/dom-app/domains", { token: u.token })).body).toHaveLength(1);
  });

  test("formation: unknown types are 404, quantities and sizes validated, batch is all-or-nothing", async () => {
    const app = (await api.call("POST", "/apps", { token: u.token, body: { name: "form-app" } })).body;
    const { formation } = await import("@berth/api");
    await formation.syncFormation(api.db, app.id, [{ type: "web", command: "npm start" }, { type: "worker", command: "node worker.js" }], api.clock);
    const list = await api.call("GET", "/apps/form-app/formation", { token: u.token });
    expect(list.body.map((f: any) => [f.type, f.quantity, f.size])).toEqual([["web", 1, "basic"], ["worker", 0, "basic"]]);
    const one = await api.call("PATCH", "/apps/form-app/formation/worker", { token: u.token, body: { quantity: 2, size: "Standard-2X" } });
    expect(one.body).toMatchObject({ type: "worker", quantity: 2, size: "standard-2x" });
    expect(api.hooks.calls).toContainEqual({ hook: "formationChanged", appId: app.id });
    expect((await api.call("PATCH", "/apps/form-app/formation/clock", { token: u.token, body: { quantity: 1 } })).status).toBe(404);
    expect((await api.call("PATCH", "/apps/form-app/formation/web", { token: u.token, body: { quantity: -1 } })).status).toBe(422);
    expect((await api.call("PATCH", "/apps/form-app/formation/web", { token: u.token, body: { size: "huge" } })).status).toBe(422);
    const batch = await api.call("PATCH", "/apps/form-app/formation", { token: u.token, body: { updates: [{ type: "web", quantity: 3 }, { type: "nope", quantity: 1 }] } });
    expect(batch.status).toBe(404);
    expect((await api.call("GET", "/apps/form-app/formation/web", { token: u.token })).body.quantity).toBe(1);
    const quota = await api.call("PATCH", "/apps/form-app/formation", { token: u.token, body: { updates: [{ type: "web", quantity: 15 }, { type: "worker", quantity: 15 }] } });
    expect(quota.status).toBe(402);
    expect(quota.body.id).toBe("quota_exceeded");
  });

  test("dynos come from the runtime; restart goes to the platform", async () => {
    const app = (await api.call("POST", "/apps", { token: u.token, body: { name: "dyno-app" } })).body;
    api.instances.set(app.id, [{ name: "web.1", appId: app.id, type: "web", release: 1, state: "crashed", startedAt: new Date(), restarts: 3, lastExit: "exited 1", size: "basic" }]);
    const list = await api.call("GET", "/apps/dyno-app/dynos", { token: u.token });
    expect(list.body[0]).toMatchObject({ name: "web.1", state: "crashed", restarts: 3, last_exit: "exited 1" });
    expect((await api.call("DELETE", "/apps/dyno-app/dynos/web.1", { token: u.token })).status).toBe(202);
    expect(api.hooks.calls).toContainEqual({ hook: "restart", appId: app.id, arg: "web.1" });
    expect((await api.call("DELETE", "/apps/dyno-app/dynos/..%2Fetc", { token: u.token })).status).toBe(404);
  });

  test("builds: source URLs only from Berth's blob store or allowed hosts", async () => {
    await api.call("POST", "/apps", { token: u.token, body: { name: "build-app" } });
    for (const url of ["http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "https://evil.example/x.tgz", "not a url"]) {
      const r = await api.call("POST", "/apps/build-app/builds", { token: u.token, body: { source_blob: { url } } });
      expect(r.status, url).toBe(422);
    }
    const ok = await api.call("POST", "/apps/build-app/builds", { token: u.token, body: { source_blob: { url: `${api.url}/sources/abc/blob`, version: "v1" } } });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ status: "pending", source_blob: { version: "v1" } });
    expect(ok.body.output_stream_url).toBe(`${api.url}/builds/${ok.body.id}/output`);
  });
});

describe("teams", () => {
  test("create, members and roles, team apps, organizations alias, delete only when empty", async () => {
    const owner = await api.user();
    const mate = await api.user();
    expect((await api.call("POST", "/teams", { token: owner.token, body: { name: "acme" } })).status).toBe(201);
    expect((await api.call("POST", "/teams", { token: mate.token, body: { name: "acme" } })).status).toBe(409);
    expect((await api.call("POST", "/teams", { token: mate.token, body: { name: "Bad Name" } })).status).toBe(422);
    const add = await api.call("PUT", "/teams/acme/members", { token: owner.token, body: { email: mate.email, role: "member" } });
    expect(add.body).toMatchObject({ email: mate.email, role: "member" });
    expect((await api.call("PUT", "/teams/acme/members", { token: owner.token, body: { email: mate.email, role: "owner" } })).status).toBe(422);
    expect((await api.call("PUT", "/teams/acme/members", { token: owner.token, body: { email: "nobody@example.test", role: "member" } })).status).toBe(404);
    const members = await api.call("GET", "/organizations/acme/members", { token: mate.token });
    expect(members.body.map((m: any) => m.role).sort()).toEqual(["admin", "member"]);
    const app = await api.call("POST", "/teams/apps", { token: mate.token, body: { name: "acme-web", team: "acme" } });
    expect(app.body.team).toMatchObject({ name: "acme" });
    expect((await api.call("GET", "/teams/acme/apps", { token: owner.token })).body.map((a: any) => a.name)).toEqual(["acme-web"]);
    // The last admin cannot leave or be demoted.
    expect((await api.call("DELETE", `/teams/acme/members/${encodeURIComponent(owner.email)}`, { token: owner.token })).status).toBe(409);
    const del = await api.call("DELETE", "/teams/acme", { token: owner.token });
    expect(del.status).toBe(409);
    expect(del.body.message).toContain("acme-web");
    // Transfer the app to the admin's personal account, then the team can go.
    const moved = await api.call("PATCH", "/teams/apps/acme-web", { token: owner.token, body: { owner: owner.email } });
    expect(moved.body.team).toBeNull();
    expect((await api.call("DELETE", "/teams/acme", { token: owner.token })).status).toBe(200);
    expect((await api.call("GET", "/teams/acme", { token: owner.token })).status).toBe(404);
  });
});

test("the OpenAPI document lists exactly the mounted routes", async () => {
  const doc = (await api.call("GET", "/openapi.json")).body;
  const documented = new Set<string>();
  for (const [path, ops] of Object.entries(doc.paths as Record<string, object>)) for (const m of Object.keys(ops)) documented.add(`${m.toUpperCase()} ${path}`);
  const mounted = new Set(
    api.assembled.app.routes
      // Not API resources: the document itself, the health check, and middleware.
      .filter((r) => r.method !== "ALL" && r.path !== "/openapi.json" && r.path !== "/healthz")
      .map((r) => `${r.method} ${openApiPath(r.path)}`),
  );
  expect([...documented].sort()).toEqual([...mounted].sort());
  expect(doc.paths["/apps/{app_id_or_name}/config-vars"].patch.summary).toBeTruthy();
});

describe("sources, build output and log sessions", () => {
  test("POST /sources gives signed put/get URLs; an upload can be built; tampered or expired URLs are refused", async () => {
    await api.call("POST", "/apps", { token: u.token, body: { name: "src-app" } });
    const src = await api.call("POST", "/sources", { token: u.token });
    expect(src.status).toBe(201);
    const { put_url, get_url } = src.body.source_blob;
    expect(put_url).toMatch(/\/sources\/[0-9a-f-]{36}\/blob\?method=PUT&expires=\d+&sig=/);
    const put = await fetch(put_url, { method: "PUT", body: "tarball bytes" });
    expect(put.status).toBe(200);
    expect(await (await fetch(get_url)).text()).toBe("tarball bytes");
    expect((await fetch(put_url.replace(/sig=[^&]+/, "sig=forged"), { method: "PUT", body: "x" })).status).toBe(403);
    expect((await fetch(get_url.replace("method=GET", "method=PUT"))).status).toBe(403);
    expect((await fetch(put_url.replace(/expires=\d+/, "expires=1"), { method: "PUT", body: "x" })).status).toBe(403);
    const tooBig = await fetch(put_url, { method: "PUT", body: Buffer.alloc(2 * 1024 * 1024) });
    expect(tooBig.status).toBe(413);

    const build = await api.call("POST", "/apps/src-app/builds", { token: u.token, body: { source_blob: { url: get_url, version: "abc" } } });
    expect(build.status).toBe(201);
    const row = await api.db.selectFrom("builds").select("source_blob_key").where("id", "=", build.body.id).executeTakeFirstOrThrow();
    expect(row.source_blob_key).toMatch(/^sources\/[0-9a-f-]{36}\.tgz$/);
    const missing = await api.call("POST", "/apps/src-app/builds", { token: u.token, body: { source_blob: { url: `${api.url}/sources/00000000-0000-4000-8000-000000000000/blob` } } });
    expect(missing.status).toBe(422);
  });

  test("a build's output streams from its output_stream_url and ends when the build ends", async () => {
    const build = await api.call("POST", "/apps/src-app/builds", { token: u.token, body: { source_blob: { url: "https://github.com/acme/app.tgz" } } });
    await api.db.insertInto("build_logs").values([{ build_id: build.body.id, seq: 0, line: "-----> Building" }, { build_id: build.body.id, seq: 1, line: "       done" }]).execute();
    await api.db.updateTable("builds").set({ status: "failed" }).where("id", "=", build.body.id).execute();
    const res = await fetch(build.body.output_stream_url);
    expect(await res.text()).toBe("-----> Building\n       done\n");
    expect((await fetch(`${api.url}/builds/not-a-uuid/output`)).status).toBe(404);
  });

  test("log sessions replay recent lines in Heroku's format, filtered by dyno; forged sessions are refused", async () => {
    const app = (await api.call("GET", "/apps/src-app", { token: u.token })).body;
    const at = new Date("2026-11-23T23:12:17Z");
    api.assembled.logs.push({ appId: app.id, at, source: "app", dyno: "web.1", text: "listening on 5000" });
    api.assembled.logs.push({ appId: app.id, at, source: "heroku", dyno: "router", text: "at=info method=GET path=\"/\" status=200" });
    const all = await api.call("POST", "/apps/src-app/log-sessions", { token: u.token, body: { lines: 10 } });
    expect(all.status).toBe(201);
    expect(await (await fetch(all.body.logplex_url)).text()).toBe(
      '2026-11-23T23:12:17.000000+00:00 app[web.1]: listening on 5000\n2026-11-23T23:12:17.000000+00:00 heroku[router]: at=info method=GET path="/" status=200\n',
    );
    const web = await api.call("POST", "/apps/src-app/log-sessions", { token: u.token, body: { dyno: "web" } });
    expect(await (await fetch(web.body.logplex_url)).text()).toBe("2026-11-23T23:12:17.000000+00:00 app[web.1]: listening on 5000\n");
    expect((await fetch(all.body.logplex_url.replace(/\.[^.]+$/, ".forged"))).status).toBe(403);
    const stranger = await api.user();
    expect((await api.call("POST", "/apps/src-app/log-sessions", { token: stranger.token, body: {} })).status).toBe(404);
  });
});
