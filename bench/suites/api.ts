/**
 * api: latency of the common Platform API calls with a big control plane. Teams,
 * their admins (each with the personal team every user has), apps and their v1
 * releases are bulk-inserted with SQL; the caller is a real user (signed up through
 * the API) in one team with 10 apps made through the API. Calls run one at a time
 * over a keep-alive connection, each timed to the end of its body.
 */
import { sql } from "kysely";
import type { TestPlatform } from "../../test/harness/platform.ts";
import { log } from "../proc.ts";
import type { Profile } from "../profile.ts";
import { round, summarize } from "../stats.ts";

const CALLER_APPS = 10;

export async function apiSuite(p: TestPlatform, prof: Profile) {
  const t0 = performance.now();
  const teams = prof.apiTeams;
  const perTeam = Math.max(1, Math.round(prof.apiApps / teams));
  const db = p.db;
  await sql`INSERT INTO users (email, password_hash) SELECT 'bulk-' || g || '@bench.test', '!' FROM generate_series(1, ${teams}::int) g`.execute(db);
  await sql`INSERT INTO teams (name, personal) SELECT 'personal-' || id, true FROM users WHERE email LIKE 'bulk-%@bench.test'`.execute(db);
  await sql`INSERT INTO team_members (team_id, user_id, role) SELECT t.id, u.id, 'admin' FROM users u JOIN teams t ON t.name = 'personal-' || u.id WHERE u.email LIKE 'bulk-%@bench.test'`.execute(db);
  await sql`INSERT INTO teams (name) SELECT 'bulk-team-' || g FROM generate_series(1, ${teams}::int) g`.execute(db);
  await sql`
    INSERT INTO team_members (team_id, user_id, role)
    SELECT t.id, u.id, 'admin' FROM generate_series(1, ${teams}::int) g
    JOIN users u ON u.email = 'bulk-' || g || '@bench.test' JOIN teams t ON t.name = 'bulk-team-' || g`.execute(db);
  await sql`
    INSERT INTO apps (name, team_id, owner_id)
    SELECT 'bulk-' || g || '-' || a, t.id, u.id FROM generate_series(1, ${teams}::int) g
    JOIN users u ON u.email = 'bulk-' || g || '@bench.test' JOIN teams t ON t.name = 'bulk-team-' || g
    CROSS JOIN generate_series(1, ${perTeam}::int) a`.execute(db);
  await sql`
    INSERT INTO releases (app_id, version, config_version, description, user_id)
    SELECT id, 1, 0, 'Initial release', owner_id FROM apps WHERE name LIKE 'bulk-%'`.execute(db);
  await sql`
    INSERT INTO release_outcomes (release_id, status)
    SELECT r.id, 'succeeded' FROM releases r JOIN apps a ON a.id = r.app_id WHERE a.name LIKE 'bulk-%'`.execute(db);
  await sql`ANALYZE`.execute(db);

  const caller = await p.user();
  const team = await p.call("POST", "/teams", { token: caller.token, body: { name: "bench-api-team" } });
  if (team.status !== 201) throw new Error(`creating the caller's team: ${team.status} ${JSON.stringify(team.body)}`);
  const apps: string[] = [];
  for (let i = 1; i <= CALLER_APPS; i++) {
    const name = `bench-api-${i}`;
    const r = await p.call("POST", "/teams/apps", { token: caller.token, body: { name, team: "bench-api-team" } });
    if (r.status !== 201) throw new Error(`creating ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    apps.push(name);
  }
  const rows = await sql<{ users: string; teams: string; apps: string }>`SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM teams) AS teams, (SELECT count(*) FROM apps) AS apps`.execute(db);
  const counts = rows.rows[0]!;
  log(`api: ${counts.users} users, ${counts.teams} teams, ${counts.apps} apps in ${Math.round(performance.now() - t0)} ms`);

  const headers = { Accept: "application/vnd.heroku+json; version=3", Authorization: `Bearer ${caller.token}`, "Content-Type": "application/json" };
  const calls: { name: string; method: string; path: (app: string) => string; body?: (i: number) => unknown }[] = [
    { name: "GET /apps", method: "GET", path: () => "/apps" },
    { name: "GET /apps/{app}", method: "GET", path: (a) => `/apps/${a}` },
    { name: "GET /apps/{app}/config-vars", method: "GET", path: (a) => `/apps/${a}/config-vars` },
    { name: "PATCH /apps/{app}/config-vars", method: "PATCH", path: (a) => `/apps/${a}/config-vars`, body: (i) => ({ BENCH_COUNTER: String(i) }) },
    { name: "GET /apps/{app}/releases", method: "GET", path: (a) => `/apps/${a}/releases` },
  ];
  const once = async (c: (typeof calls)[number], i: number): Promise<number> => {
    const app = apps[i % apps.length]!;
    const s = performance.now();
    const res = await fetch(p.apiUrl + c.path(app), { method: c.method, headers, ...(c.body ? { body: JSON.stringify(c.body(i)) } : {}) });
    await res.arrayBuffer();
    const ms = performance.now() - s;
    if (res.status !== 200 && res.status !== 206) throw new Error(`${c.name} answered ${res.status}`);
    return ms;
  };
  const all: number[] = [];
  const byCall: Record<string, { p50Ms: number; p99Ms: number }> = {};
  for (const c of calls) {
    for (let i = 0; i < 10; i++) await once(c, i); // warm-up: connection, prepared plans, JIT
    const samples: number[] = [];
    for (let i = 0; i < prof.apiIterations; i++) samples.push(await once(c, i));
    all.push(...samples);
    const s = summarize(samples);
    byCall[c.name] = { p50Ms: s.p50Ms, p99Ms: s.p99Ms };
    log(`api: ${c.name}: p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms`);
  }
  const s = summarize(all);
  return {
    p50Ms: s.p50Ms,
    p99Ms: s.p99Ms,
    requests: all.length,
    rows: { users: Number(counts.users), teams: Number(counts.teams), apps: Number(counts.apps) },
    callerApps: CALLER_APPS,
    calls: byCall,
    maxP99Ms: round(Math.max(...Object.values(byCall).map((c) => c.p99Ms))),
  };
}
