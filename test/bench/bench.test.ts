/**
 * `npm run bench -- --quick` keeps working: the bench runs end to end (as a child
 * process, exactly as `npm run bench` starts it) with the smallest counts, and its JSON
 * has every figure the issue asks for as a finite number. The figures themselves are
 * not checked here: on a loaded test machine they mean nothing.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, test } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
let out: string | undefined;
afterAll(async () => {
  if (out) await rm(out, { recursive: true, force: true });
});

const KEYS = [
  "pushToLive.p50Ms",
  "pushToLive.baselineP50Ms",
  "firstDeploy.ms",
  "coldStart.p50Ms",
  "coldStart.frozenP50Ms",
  "coldStart.baselineP50Ms",
  "router.rps",
  "router.directRps",
  "router.nginxRps",
  "router.ratioRouterDirect",
  "router.ratioRouterNginx",
  "buildCache.uploadedBytes",
  "buildCache.dependencyInstallMs",
  "api.p50Ms",
  "api.p99Ms",
  "memory.platformIdleMb",
  "memory.platformAppsAtZeroMb",
  "memory.router10kRoutesMb",
  "memory.routerEmptyMb",
  "machine.cores",
];

/** The bench's own limit is below the test's, so it tears itself down before Vitest gives up. */
const SMALLEST = "pushes=1,wakes=1,loadSeconds=1,warmupSeconds=0,apiTeams=10,apiApps=100,apiIterations=5,memoryApps=2,memoryRoutes=10000,settleMs=500,deadlineMs=200000";

test("npm run bench -- --quick writes every figure as a finite number", async () => {
  out = await mkdtemp(join(tmpdir(), "berth-bench-test-"));
  const child = spawn(process.execPath, [join(root, "bench/run.ts"), "--quick", "--out", out, "--set", SMALLEST], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-20_000)));
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  expect(code, stderr).toBe(0);

  const file = stdout.trim().split("\n").at(-1)!;
  const results = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  const at = (path: string) => path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], results);
  const bad = KEYS.filter((k) => typeof at(k) !== "number" || !Number.isFinite(at(k) as number));
  expect(bad, `${JSON.stringify(results, null, 2)}\n${stderr}`).toEqual([]);
  expect(at("machine.commit")).toMatch(/^([0-9a-f]{40}|unknown)$/);
  expect(at("memory.apps")).toBe(2);
  expect(await readFile(file.replace(/\.json$/, ".md"), "utf8")).toContain("| Measure | Berth | Baseline, same run | Ratio | Target |");
}, 240_000);
