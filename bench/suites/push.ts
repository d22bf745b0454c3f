/**
 * pushToLive and firstDeploy, on the whole platform (test/harness/platform.ts).
 *
 * firstDeploy: a new app, cold build cache (the Node.js runtime is downloaded and the
 * dependency installed), from the start of `git push` until the router's first 200.
 *
 * pushToLive: a one-line change (server.js's VERSION; lockfile unchanged, cache warm),
 * from the start of `git push` until the router answers with the new body. Baseline,
 * measured right before each platform push: `git push` of the same commit to a plain
 * bare repository over smart HTTP (git http-backend, see git-http.ts), plus a cold
 * start of the same app by hand (node server.js, polled until it answers).
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestPlatform } from "../../test/harness/platform.ts";
import { body, commitAll, git, serverJs, startByHand, writeApp } from "../app.ts";
import { startGitHttp } from "../git-http.ts";
import { log, pollHttp, type Teardown } from "../proc.ts";
import type { Profile } from "../profile.ts";
import { ratio, round, summarize } from "../stats.ts";

/** The deployed app the later parts reuse. */
export interface BenchApp {
  id: string;
  name: string;
  host: string;
  token: string;
  repo: string;
  version: number;
  builds: { first: string; warm: string[] };
}

export interface PushResults {
  firstDeploy: { ms: number; buildMs: number };
  pushToLive: Record<string, unknown> & { p50Ms: number; baselineP50Ms: number };
  app: BenchApp;
}

interface Phases {
  uploadMs: number;
  queueMs: number;
  buildMs: number;
  releaseMs: number;
  routeMs: number;
}

export async function pushSuite(p: TestPlatform, td: Teardown, prof: Profile): Promise<PushResults> {
  const routerPort = Number(new URL(p.routerUrl).port);
  const owner = await p.user();
  const name = "bench-push";
  const host = `${name}.localhost`;
  const created = await p.call("POST", "/apps", { token: owner.token, body: { name } });
  if (created.status !== 201) throw new Error(`creating ${name}: ${created.status} ${JSON.stringify(created.body)}`);
  const appId = created.body.id as string;
  // Keep the router's idle tiers out of the way: the cold-start part forces them itself.
  const patched = await p.call("PATCH", `/apps/${name}`, { token: owner.token, body: { idle_freeze_seconds: 3600, idle_stop_seconds: 7200 } });
  if (patched.status !== 200) throw new Error(`patching ${name}: ${patched.status} ${JSON.stringify(patched.body)}`);

  const repo = await mkdtemp(join(p.dir, "bench-src-"));
  await writeApp(repo);
  const home = p.dir;
  for (const args of [["init", "-q", "-b", "main"], ["remote", "add", "platform", p.remote(name, owner.token)]]) await git(repo, args, home, 30_000);
  await commitAll(repo, home, "v1");

  const bareRoot = join(p.dir, "bench-bare");
  await mkdir(bareRoot, { recursive: true });
  await git(bareRoot, ["init", "-q", "--bare", "plain.git"], home, 30_000);
  const plain = await startGitHttp(bareRoot);
  td.add("git http-backend server", () => plain.close());
  await git(repo, ["remote", "add", "plain", `${plain.url}/plain.git`], home, 30_000);

  // ---------------------------------------------------------------- first deploy
  log("firstDeploy: pushing a new app with a cold build cache");
  const t0 = performance.now();
  const first = await git(repo, ["push", "-q", "platform", "main"], home);
  if (first.code !== 0) throw new Error(`first push failed:\n${first.out}`);
  const firstMs = await pollHttp(routerPort, { host, ok: (a) => a.status === 200 && a.body === body(1), timeoutMs: 60_000, since: t0 });
  const firstBuild = await latestBuild(p, appId);
  const firstDeploy = { ms: round(firstMs), buildMs: round(firstBuild.finished_at!.getTime() - firstBuild.started_at!.getTime()) };
  log(`firstDeploy: ${Math.round(firstMs)} ms (build ${firstDeploy.buildMs} ms)`);
  // The bare repository gets the same history, so its pushes carry the same one-commit packs.
  const seeded = await git(repo, ["push", "-q", "plain", "main"], home, 60_000);
  if (seeded.code !== 0) throw new Error(`baseline push failed:\n${seeded.out}`);

  // ---------------------------------------------------------------- warm pushes
  const live: number[] = [];
  const basePush: number[] = [];
  const baseStart: number[] = [];
  const baseline: number[] = [];
  const phases: Phases[] = [];
  const warm: string[] = [];
  let version = 1;
  for (let i = 0; i < prof.pushes; i++) {
    version++;
    await writeFile(join(repo, "server.js"), serverJs(version));
    await commitAll(repo, home, `v${version}`);

    const b0 = performance.now();
    const bp = await git(repo, ["push", "-q", "plain", "main"], home, 60_000);
    if (bp.code !== 0) throw new Error(`baseline push failed:\n${bp.out}`);
    const pushMs = performance.now() - b0;
    const startMs = await startByHand(repo, body(version));
    basePush.push(pushMs);
    baseStart.push(startMs);
    baseline.push(pushMs + startMs);

    const wall0 = Date.now();
    const s0 = performance.now();
    const r = await git(repo, ["push", "-q", "platform", "main"], home);
    if (r.code !== 0) throw new Error(`push ${version} failed:\n${r.out}`);
    const ms = await pollHttp(routerPort, { host, ok: (a) => a.status === 200 && a.body === body(version), timeoutMs: 60_000, since: s0 });
    live.push(ms);
    const b = await latestBuild(p, appId);
    warm.push(b.id);
    phases.push(await phasesOf(p, b, wall0, wall0 + ms));
    log(`pushToLive ${i + 1}/${prof.pushes}: ${Math.round(ms)} ms (baseline ${Math.round(pushMs)} + ${Math.round(startMs)} ms)`);
  }

  const s = summarize(live);
  const base = summarize(baseline);
  const phaseP50 = (k: keyof Phases) => summarize(phases.map((x) => x[k])).p50Ms;
  return {
    firstDeploy,
    pushToLive: {
      n: s.n,
      p50Ms: s.p50Ms,
      p90Ms: s.p90Ms,
      baselineP50Ms: base.p50Ms,
      baselineP90Ms: base.p90Ms,
      ratioP50: ratio(s.p50Ms, base.p50Ms),
      baselinePushP50Ms: summarize(basePush).p50Ms,
      baselineStartP50Ms: summarize(baseStart).p50Ms,
      baselineTransport: "smart HTTP (git http-backend)",
      phasesP50Ms: { upload: phaseP50("uploadMs"), queue: phaseP50("queueMs"), build: phaseP50("buildMs"), release: phaseP50("releaseMs"), route: phaseP50("routeMs") },
      samplesMs: live.map((x) => round(x)),
      baselineSamplesMs: baseline.map((x) => round(x)),
    },
    app: { id: appId, name, host, token: owner.token, repo, version, builds: { first: firstBuild.id, warm } },
  };
}

async function latestBuild(p: TestPlatform, appId: string) {
  return p.db.selectFrom("builds").selectAll().where("app_id", "=", appId).orderBy("created_at", "desc").limit(1).executeTakeFirstOrThrow();
}

/** Where a push's time went, from the rows the platform wrote (same machine clock). */
async function phasesOf(p: TestPlatform, b: Awaited<ReturnType<typeof latestBuild>>, pushStart: number, liveAt: number): Promise<Phases> {
  const rel = await p.db
    .selectFrom("releases as r")
    .leftJoin("release_outcomes as o", "o.release_id", "r.id")
    .select(["r.created_at", "o.created_at as settled_at"])
    .where("r.build_id", "=", b.id)
    .executeTakeFirst();
  const created = b.created_at.getTime();
  const started = b.started_at?.getTime() ?? created;
  const finished = b.finished_at?.getTime() ?? started;
  const settled = rel?.settled_at?.getTime() ?? finished;
  return { uploadMs: created - pushStart, queueMs: started - created, buildMs: finished - started, releaseMs: settled - finished, routeMs: liveAt - settled };
}
