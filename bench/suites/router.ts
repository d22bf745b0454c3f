/**
 * router: throughput and latency of a small-response app through Berth's router,
 * directly, and through nginx (1 worker, keepalive upstream), with wrk at fixed
 * concurrency for a fixed time; then again with `routerApps` more apps in the route
 * table and as nginx server blocks. The router runs in its own process
 * (router-child.ts), like the app and nginx, so the three compete for the same cores
 * the same way.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNginx } from "../nginx.ts";
import { freePort, httpGet, log, spawnOwned, waitPort, type Teardown } from "../proc.ts";
import type { Profile } from "../profile.ts";
import { spawnRouter } from "../router-proc.ts";
import { ratio, round } from "../stats.ts";
import { wrk, type LoadResult } from "../wrk.ts";

const HOST = "bench.localhost";
const BODY = "hello world";

export async function routerSuite(td: Teardown, prof: Profile) {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-app-"));
  td.add("router app dir", () => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, "server.js"), `require("node:http").createServer((req, res) => res.end(${JSON.stringify(BODY)})).listen(Number(process.env.PORT), "127.0.0.1");\n`);
  const appPort = await freePort();
  const app = spawnOwned(td, "router bench app", process.execPath, ["server.js"], { cwd: dir, env: { PATH: process.env.PATH ?? "", PORT: String(appPort) }, stdio: "ignore" });
  await waitPort(appPort, 10_000, app);

  const load = async (label: string, port: number, host?: string): Promise<LoadResult> => {
    const check = await httpGet(port, "/", host ? { host } : {});
    if (check.status !== 200 || check.body !== BODY) throw new Error(`${label}: answered ${check.status} ${check.body.slice(0, 100)}`);
    const o = { port, ...(host ? { host } : {}), threads: prof.loadThreads, connections: prof.loadConnections };
    if (prof.warmupSeconds > 0) await wrk({ ...o, seconds: prof.warmupSeconds });
    const r = await wrk({ ...o, seconds: prof.loadSeconds });
    log(`router: ${label}: ${Math.round(r.rps)} req/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms${r.errors ? `, ${r.errors} errors` : ""}`);
    return r;
  };

  const direct = await load("direct", appPort);
  const runs: Record<string, { router: LoadResult; nginx: LoadResult }> = {};
  for (const fillers of [0, prof.routerApps]) {
    const router = spawnRouter(td);
    const { port } = await router.start(appPort, HOST);
    if (fillers) await router.fill(fillers);
    const r = await load(`router, ${fillers + 1} apps`, port, HOST);
    await router.stop();
    const nginx = await startNginx(td, { upstreamPort: appPort, host: HOST, fillers });
    const n = await load(`nginx, ${fillers + 1} server blocks`, nginx.port, HOST);
    await nginx.stop();
    runs[fillers ? "many" : "one"] = { router: r, nginx: n };
  }
  const one = runs.one!;
  const many = runs.many!;
  const fmt = (r: LoadResult) => ({ rps: round(r.rps), p50Ms: round(r.p50Ms, 3), p99Ms: round(r.p99Ms, 3), errors: r.errors });
  return {
    tool: `wrk -t${prof.loadThreads} -c${prof.loadConnections} -d${prof.loadSeconds}s`,
    rps: round(one.router.rps),
    p50Ms: round(one.router.p50Ms, 3),
    p99Ms: round(one.router.p99Ms, 3),
    directRps: round(direct.rps),
    directP50Ms: round(direct.p50Ms, 3),
    directP99Ms: round(direct.p99Ms, 3),
    nginxRps: round(one.nginx.rps),
    nginxP50Ms: round(one.nginx.p50Ms, 3),
    nginxP99Ms: round(one.nginx.p99Ms, 3),
    ratioRouterDirect: ratio(one.router.rps, direct.rps),
    ratioRouterNginx: ratio(one.router.rps, one.nginx.rps),
    errors: direct.errors + one.router.errors + one.nginx.errors + many.router.errors + many.nginx.errors,
    manyApps: {
      apps: prof.routerApps + 1,
      router: fmt(many.router),
      nginx: fmt(many.nginx),
      ratioRouterDirect: ratio(many.router.rps, direct.rps),
      ratioRouterNginx: ratio(many.router.rps, many.nginx.rps),
    },
  };
}
