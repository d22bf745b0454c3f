/**
 * memory: resident memory of the whole platform as `npm start` runs it (scripts/start.ts
 * with embedded Postgres, api, builder, router; data in a temp dir, free ports), summed
 * over its process tree from /proc once /healthz answers and the platform sat idle;
 * then again with `memoryApps` deployed apps scaled to zero. And the router's own
 * resident memory empty vs with `memoryRoutes` routes (router-child.ts).
 *
 * Deploying the apps: one image is built for real earlier in the run (the push part);
 * its OCI layout is copied here, and each app gets a succeeded build row pointing at it
 * plus the builder's `build.finished` event, so the platform's deployer makes the release
 * and starts the instance as after any build. The router's idle timers then take each app
 * to zero (its idle_stop_seconds is set to 2 s). Building 100 apps from source would only
 * download the Node.js runtime 100 times (the build cache is per app).
 *
 * RSS is summed per process, so pages shared between Postgres's processes count once per
 * process: an upper bound. PSS (shared pages split between sharers) is reported beside it.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, cp, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { EVENTS_CHANNEL, openDb } from "@berth/db";
import { sql } from "kysely";
import type { TestPlatform } from "../../test/harness/platform.ts";
import { freePort, log, memoryOf, processTree, run, spawnOwned, stopChild, type ProcInfo, type Teardown } from "../proc.ts";
import type { Profile } from "../profile.ts";
import { spawnRouter } from "../router-proc.ts";
import { MB, round } from "../stats.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** The image of a real build, to deploy many apps from. */
export interface SeedBuild {
  image: { kind: string; dir: string; digest: string; launchEnv?: Record<string, string> };
  processes: unknown;
  buildpacks: unknown;
}

export async function seedFrom(p: TestPlatform, buildId: string): Promise<SeedBuild> {
  const b = await p.db.selectFrom("builds").select(["image", "processes", "buildpacks"]).where("id", "=", buildId).executeTakeFirstOrThrow();
  return { image: b.image as unknown as SeedBuild["image"], processes: b.processes, buildpacks: b.buildpacks };
}

function role(p: ProcInfo): string {
  if (p.cmdline.includes("scripts/start.ts")) return "start";
  if (p.cmdline.includes("services/api/")) return "api";
  if (p.cmdline.includes("services/builder/")) return "builder";
  if (p.cmdline.includes("services/router/")) return "router";
  if (p.cmdline.includes("embedded-main")) return "postgres";
  if (p.comm === "postgres" || p.cmdline.startsWith("postgres") || p.cmdline.includes("/bin/postgres")) return "postgres";
  return "other";
}

/** Platform memory now: app instances (anything under runc, or not a platform process) left out and counted. */
async function measure(rootPid: number) {
  const tree = await processTree(rootPid);
  const excluded = new Set<number>();
  for (const p of tree) if (p.comm.startsWith("runc") || excluded.has(p.ppid) || role(p) === "other") excluded.add(p.pid);
  let rss = 0;
  let pss = 0;
  const byRole: Record<string, number> = {};
  for (const p of tree) {
    if (excluded.has(p.pid)) continue;
    const m = await memoryOf(p.pid);
    rss += m.rss;
    pss += m.pss;
    const r = role(p);
    byRole[r] = (byRole[r] ?? 0) + m.rss;
  }
  const others = tree.filter((p) => excluded.has(p.pid)).map((p) => `${p.pid} ${p.comm}: ${p.cmdline.slice(0, 120)}`);
  return { rss, pss, processes: tree.length - excluded.size, excluded: excluded.size, others, byRole };
}

/** Median of a few samples, `gapMs` apart. */
async function sample(rootPid: number, n = 3, gapMs = 500) {
  const s = [];
  for (let i = 0; i < n; i++) {
    if (i) await sleep(gapMs);
    s.push(await measure(rootPid));
  }
  s.sort((a, b) => a.rss - b.rss);
  const m = s[Math.floor(s.length / 2)]!;
  return {
    rssMb: round(m.rss / MB, 1),
    pssMb: round(m.pss / MB, 1),
    processes: m.processes,
    appProcesses: m.excluded,
    others: m.others,
    byProcessMb: Object.fromEntries(Object.entries(m.byRole).map(([k, v]) => [k, round(v / MB, 1)])),
  };
}

async function waitOk(url: string, timeoutMs: number, what: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the platform exited (${child.exitCode ?? child.signalCode}) before ${what} answered`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`${what} (${url}) did not answer within ${timeoutMs} ms`);
}

/** Instances the platform's route feed lists, from its snapshot (the first event of the router's stream). */
async function instancesRunning(api: string, token: string): Promise<number> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10_000);
  try {
    const res = await fetch(`${api}/internal/routes/stream`, { headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" }, signal: ctl.signal });
    if (!res.ok || !res.body) throw new Error(`route stream answered ${res.status}`);
    let buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      const end = buf.indexOf("\n\n");
      if (end < 0) continue;
      const data = buf.slice(0, end).split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      const routes = JSON.parse(data) as { instances: unknown[] }[];
      return routes.reduce((n, r) => n + r.instances.length, 0);
    }
    throw new Error("route stream ended before its snapshot");
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
}

export async function memorySuite(td: Teardown, prof: Profile, seed: SeedBuild) {
  const tmp = await mkdtemp(join(tmpdir(), "berth-bench-platform-"));
  td.add("platform temp dir", () => rm(tmp, { recursive: true, force: true }));
  // As root, embedded Postgres runs as the `postgres` user, which must reach its data dir.
  await chmod(tmp, 0o755);
  const seedDir = join(tmp, "seed-images");
  await cp(seed.image.dir, seedDir, { recursive: true });

  const [apiPort, routerPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const internalToken = randomBytes(24).toString("hex");
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("BERTH_") && k !== "DATABASE_URL") env[k] = v;
  Object.assign(env, {
    BERTH_DATA_DIR: join(tmp, "data"),
    BERTH_API_PORT: String(apiPort),
    BERTH_ROUTER_PORT: String(routerPort),
    BERTH_ROUTER_ADMIN_PORT: String(adminPort),
    BERTH_INTERNAL_TOKEN: internalToken,
    BERTH_LOG_LEVEL: "warn",
  });
  const out = await open(join(tmp, "platform.log"), "w");
  td.add("platform log", () => out.close());
  log(`memory: starting the platform (node scripts/start.ts, data in ${tmp})`);
  const t0 = performance.now();
  // Runs after start.ts is stopped (teardown is LIFO): app containers are meant to outlive the
  // control plane, and a start.ts that had to be killed orphans its children. Remove our
  // containers, then kill what is left of the tree we saw, by pid (checking it is still that process).
  let lastTree: ProcInfo[] = [];
  td.add("platform leftovers", async () => {
    const runcRoot = join(tmp, "data", "runtime", "runc", "state");
    const ids = await run("runc", ["--root", runcRoot, "list", "-q"], { timeout: 10_000 }).then((r) => r.stdout.split("\n").filter(Boolean), () => []);
    for (const id of ids) await run("runc", ["--root", runcRoot, "delete", "--force", id], { timeout: 10_000 }).catch(() => {});
    for (const p of lastTree) {
      const now = await readFile(`/proc/${p.pid}/cmdline`, "utf8").catch(() => "");
      if (now.replaceAll("\0", " ").trim() !== p.cmdline) continue;
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
  const start = spawnOwned(td, "platform (scripts/start.ts)", process.execPath, [join(root, "scripts/start.ts")], { cwd: tmp, env, stdio: ["ignore", out.fd, out.fd] }, 60_000);
  const api = `http://127.0.0.1:${apiPort}`;
  try {
    await waitOk(`${api}/healthz`, 120_000, "the platform's API", start);
    await waitOk(`http://127.0.0.1:${adminPort}/healthz`, 60_000, "the platform's router", start);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nplatform log:\n${(await readFile(join(tmp, "platform.log"), "utf8")).slice(-4000)}`);
  }
  const startMs = round(performance.now() - t0);
  const remember = async () => {
    lastTree = (await processTree(start.pid!)).filter((p) => p.pid !== start.pid);
  };
  await remember();
  await sleep(prof.settleMs);
  const idle = await sample(start.pid!);
  log(`memory: platform idle ${idle.rssMb} MB RSS (${idle.pssMb} MB PSS) in ${idle.processes} processes: ${JSON.stringify(idle.byProcessMb)}`);

  // ---------------------------------------------------------------- N apps at zero
  const call = async (method: string, path: string, body?: unknown, auth?: string) => {
    const headers: Record<string, string> = { Accept: "application/vnd.heroku+json; version=3" };
    if (auth) headers.Authorization = auth;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(api + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
    return text ? (JSON.parse(text) as any) : null;
  };
  const email = "memory@bench.test";
  const password = "correct horse battery staple";
  await call("POST", "/users", { email, password });
  const auth = await call("POST", "/oauth/authorizations", {}, `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}`);
  const bearer = `Bearer ${auth.access_token.token as string}`;
  const me = await call("GET", "/account", undefined, bearer);

  const pgDir = join(tmp, "data", "postgres");
  const pgPassword = (await readFile(join(pgDir, "password"), "utf8")).trim();
  const pgPort = Number((await readFile(join(pgDir, "data", "postmaster.pid"), "utf8")).split("\n")[3]);
  const db = openDb(`postgres://postgres:${encodeURIComponent(pgPassword)}@127.0.0.1:${pgPort}/postgres`, { max: 4 });
  let dbOpen = true;
  const closeDb = async () => {
    if (dbOpen) await db.destroy();
    dbOpen = false;
  };
  td.add("platform db connection", closeDb);

  const image = { ...seed.image, dir: seedDir };
  const deployOne = async (i: number) => {
    const app = await call("POST", "/apps", { name: `mem-${i}` }, bearer);
    // The router's idle timers take the app to zero (frozen after 1 s idle, stopped after 2 s),
    // the way every idle app gets there.
    await call("PATCH", `/apps/mem-${i}`, { idle_freeze_seconds: 1, idle_stop_seconds: 2 }, bearer);
    const team = await db.selectFrom("apps").select("team_id").where("id", "=", app.id).executeTakeFirstOrThrow();
    const now = new Date();
    const build = await db
      .insertInto("builds")
      .values({
        app_id: app.id,
        team_id: team.team_id,
        user_id: me.id,
        status: "succeeded",
        source_url: "bench:seed-image",
        image: JSON.stringify(image),
        processes: JSON.stringify(seed.processes),
        buildpacks: JSON.stringify(seed.buildpacks),
        started_at: now,
        finished_at: now,
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    await sql`SELECT pg_notify(${EVENTS_CHANNEL}, ${JSON.stringify({ kind: "build.finished", buildId: build.id, appId: app.id, status: "succeeded" })})`.execute(db);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const o = await db
        .selectFrom("releases as r")
        .innerJoin("release_outcomes as o", "o.release_id", "r.id")
        .select(["o.status", "o.reason"])
        .where("r.build_id", "=", build.id)
        .executeTakeFirst();
      if (o?.status === "succeeded") break;
      if (o) throw new Error(`app mem-${i}: release failed: ${o.reason}`);
      if (Date.now() > deadline) throw new Error(`app mem-${i}: no release within 120 s`);
      await sleep(100);
    }
  };
  const t1 = performance.now();
  let nextApp = 0;
  const worker = async () => {
    while (nextApp < prof.memoryApps) await deployOne(++nextApp);
  };
  await Promise.all(Array.from({ length: Math.min(4, prof.memoryApps) }, worker));
  const deployMs = performance.now() - t1;
  await remember();
  // Wait until the route snapshot lists no instance (and say so if some stay up).
  const deadline = Date.now() + 60_000;
  let running = await instancesRunning(api, internalToken);
  while (running > 0 && Date.now() < deadline) {
    await sleep(500);
    running = await instancesRunning(api, internalToken);
  }
  if (running > 0) log(`memory: ${running} instances still listed 60 s after the last deploy; their apps did not idle to zero`);
  await sleep(prof.settleMs);
  const withApps = await sample(start.pid!);
  log(`memory: ${prof.memoryApps} apps deployed (${Math.round(deployMs)} ms) and at zero: ${withApps.rssMb} MB RSS (${withApps.pssMb} MB PSS): ${JSON.stringify(withApps.byProcessMb)}`);
  await remember();
  await closeDb();
  await stopChild(start, 60_000);

  // ---------------------------------------------------------------- router routes
  const router = spawnRouter(td);
  await router.start();
  const empty = await router.memory();
  await router.fill(prof.memoryRoutes);
  const full = await router.memory();
  await router.stop();
  const routerEmptyMb = round(empty.rss / MB, 1);
  const router10kRoutesMb = round(full.rss / MB, 1);
  log(`memory: router ${routerEmptyMb} MB empty, ${router10kRoutesMb} MB with ${prof.memoryRoutes} routes`);

  return {
    // The platform's footprint is the sum of its processes' PSS: summing RSS counts
    // every shared page (the node binary's text in each Node process, Postgres's
    // shared buffers in each backend) once per process that maps it.
    platformIdleMb: idle.pssMb,
    platformIdleRssSumMb: idle.rssMb,
    platformIdlePssMb: idle.pssMb,
    platformIdleByProcessMb: idle.byProcessMb,
    platformProcesses: idle.processes,
    platformStartMs: startMs,
    apps: prof.memoryApps,
    platformAppsAtZeroMb: withApps.pssMb,
    platformAppsAtZeroRssSumMb: withApps.rssMb,
    platformAppsAtZeroPssMb: withApps.pssMb,
    platformAppsAtZeroByProcessMb: withApps.byProcessMb,
    instancesLeft: running,
    appProcessesLeft: withApps.appProcesses,
    appProcessesLeftList: withApps.others,
    routes: prof.memoryRoutes,
    routerEmptyMb,
    router10kRoutesMb,
    router10kRoutesDeltaMb: round(router10kRoutesMb - routerEmptyMb, 1),
    routerHeapDeltaMb: round((full.heap - empty.heap) / MB, 1),
  };
}
