/**
 * The bench run: starts what each part needs, measures, writes
 * bench/results/<timestamp>.json and .md (and, for a full run, the table in
 * bench/README.md), and tears everything down — also on error, on Ctrl-C, and when
 * the run's time limit passes.
 *
 *   node bench/run.ts [--quick] [--out DIR] [--only push,coldstart,buildcache,api,router,memory] [--set key=n,...]
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestPostgres } from "../test/harness/postgres.ts";
import { log, run, Teardown } from "./proc.ts";
import { FULL, QUICK, type Profile } from "./profile.ts";
import { markdown, replaceTable } from "./report.ts";
import { MB, round } from "./stats.ts";
import { apiSuite } from "./suites/api.ts";
import { buildCacheSuite } from "./suites/buildcache.ts";
import { coldStartSuite } from "./suites/coldstart.ts";
import { memorySuite, seedFrom } from "./suites/memory.ts";
import { pushSuite } from "./suites/push.ts";
import { routerSuite } from "./suites/router.ts";
import { provide } from "./vitest-shim.ts";

const benchDir = fileURLToPath(new URL(".", import.meta.url));
const PARTS = ["push", "coldstart", "buildcache", "api", "router", "memory"] as const;
type Part = (typeof PARTS)[number];

interface Args {
  profile: Profile;
  /** Counts changed with --set. */
  custom: boolean;
  out: string;
  only: Set<Part>;
}

function parseArgs(argv: string[]): Args {
  let profile = FULL;
  let out = join(benchDir, "results");
  let only = new Set<Part>(PARTS);
  const overrides: Record<string, number> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") profile = QUICK;
    else if (a === "--out") out = argv[++i] ?? out;
    else if (a === "--only") {
      const list = (argv[++i] ?? "").split(",").filter(Boolean);
      for (const p of list) if (!(PARTS as readonly string[]).includes(p)) throw new Error(`--only: unknown part ${JSON.stringify(p)}; parts: ${PARTS.join(", ")}`);
      only = new Set(list as Part[]);
    } else if (a === "--set") {
      // e.g. --set pushes=1,wakes=1: smaller counts than the profile's (the test suite's run).
      for (const kv of (argv[++i] ?? "").split(",").filter(Boolean)) {
        const [k = "", v = ""] = kv.split("=");
        const n = Number(v);
        if (!(k in profile) || k === "name" || !Number.isFinite(n) || n < 0) throw new Error(`--set: ${JSON.stringify(kv)} is not <profile key>=<number ≥ 0>; keys: ${Object.keys(profile).filter((x) => x !== "name").join(", ")}`);
        overrides[k] = n;
      }
    } else throw new Error(`unknown argument ${JSON.stringify(a)}; usage: node bench/run.ts [--quick] [--out DIR] [--only ${PARTS.join(",")}] [--set key=n,...]`);
  }
  profile = { ...profile, ...overrides };
  // Parts that reuse the deployed app need the push part.
  if (["coldstart", "buildcache", "memory"].some((p) => only.has(p as Part))) only.add("push");
  return { profile, custom: Object.keys(overrides).length > 0, out, only };
}

async function machine() {
  const git = async (args: string[]) => (await run("git", args, { cwd: benchDir, timeout: 10_000 }).catch(() => ({ stdout: "" }))).stdout.trim();
  return {
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? "unknown",
    memoryMb: Math.round(totalmem() / MB),
    kernel: release(),
    node: process.version,
    commit: (await git(["rev-parse", "HEAD"])) || "unknown",
    dirty: (await git(["status", "--porcelain", "--untracked-files=no"])) !== "",
  };
}

/** Wraps a teardown step so calling it early and again at the end is harmless. */
function once(fn: () => Promise<unknown>): () => Promise<unknown> {
  let p: Promise<unknown> | undefined;
  return () => (p ??= fn());
}

async function measure(td: Teardown, a: Args): Promise<Record<string, unknown>> {
  const prof = a.profile;
  const results: Record<string, unknown> = {};
  const needsPlatform = ["push", "api"].some((p) => a.only.has(p as Part));
  let seedDir: string | undefined;
  let seed: Awaited<ReturnType<typeof seedFrom>> | undefined;
  if (needsPlatform) {
    log("starting Postgres and the platform (test/harness/platform.ts)");
    const pg = await startTestPostgres();
    const stopPg = once(() => pg.stop());
    td.add("postgres", stopPg);
    provide("postgresUrl", pg.url);
    const { startPlatform } = await import("../test/harness/platform.ts");
    const p = await startPlatform();
    const closePlatform = once(() => p.close());
    td.add("platform", closePlatform);
    results.isolation = p.runtime.isolation;

    if (a.only.has("push")) {
      const pushed = await pushSuite(p, td, prof);
      results.firstDeploy = pushed.firstDeploy;
      results.pushToLive = pushed.pushToLive;
      if (a.only.has("coldstart")) results.coldStart = await coldStartSuite(p, prof, pushed.app);
      if (a.only.has("buildcache")) results.buildCache = await buildCacheSuite(p, td, pushed.app);
      if (a.only.has("memory")) {
        // The image outlives the harness platform, which is stopped before the quiet parts.
        seed = await seedFrom(p, pushed.app.builds.warm[0] ?? pushed.app.builds.first);
        seedDir = await mkdtemp(join(tmpdir(), "berth-bench-seed-"));
        const dir = seedDir;
        td.add("seed image", () => rm(dir, { recursive: true, force: true }));
        await cp(seed.image.dir, dir, { recursive: true });
        seed = { ...seed, image: { ...seed.image, dir } };
      }
    }
    if (a.only.has("api")) results.api = await apiSuite(p, prof);
    log("stopping the harness platform");
    await closePlatform();
    await stopPg();
  }
  if (a.only.has("router")) results.router = await routerSuite(td, prof);
  if (a.only.has("memory") && seed) results.memory = await memorySuite(td, prof, seed);
  return results;
}

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  const td = new Teardown();
  const started = new Date();
  let stopSignal: (reason: Error) => void = () => {};
  const stopped = new Promise<never>((_, reject) => (stopSignal = reject));
  const onSignal = (sig: string) => stopSignal(new Error(`interrupted (${sig})`));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const deadline = setTimeout(() => stopSignal(new Error(`the run exceeded its ${args.profile.deadlineMs / 60_000} min limit`)), args.profile.deadlineMs);
  try {
    log(`${args.profile.name} run on ${availableParallelism()} cores; parts: ${[...args.only].join(", ")}`);
    const measured = await Promise.race([measure(td, args), stopped]);
    const results = {
      startedAt: started.toISOString(),
      durationS: round((Date.now() - started.getTime()) / 1000, 1),
      profile: args.profile.name,
      settings: args.profile,
      machine: await machine(),
      ...measured,
    };
    await mkdir(args.out, { recursive: true });
    const stamp = started.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
    const jsonPath = join(args.out, `${stamp}.json`);
    await writeFile(jsonPath, JSON.stringify(results, null, 2) + "\n");
    const table = markdown(results);
    await writeFile(join(args.out, `${stamp}.md`), table);
    // The README keeps the latest full run as the issue defines it, nothing smaller.
    if (args.profile.name === "full" && !args.custom && args.only.size === PARTS.length) {
      const readme = join(benchDir, "README.md");
      await writeFile(readme, replaceTable(await readFile(readme, "utf8"), table));
      log("bench/README.md updated");
    }
    process.stdout.write(`${jsonPath}\n`);
    log(`done in ${results.durationS} s: ${jsonPath}`);
    return 0;
  } catch (e) {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  } finally {
    clearTimeout(deadline);
    log("tearing down");
    await td.run();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
