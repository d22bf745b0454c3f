/**
 * The control plane killed while apps run, on the platform as `npm start` runs it:
 * scripts/start.ts with its api, builder and router processes. The api is SIGKILLed
 * under load through the router; start.ts restarts it. The app keeps serving throughout,
 * the restarted api adopts the running instance (the same process, not a restart), the
 * router follows the new api's route feed, and a config change still rolls out.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { requestLoop, startPlatformProcesses, type PlatformProcesses } from "../harness/platform.ts";
import { bootIdServerPy } from "../harness/apps.ts";

const APP = "steady";
const HOST = `${APP}.localhost`;

const serverPy = bootIdServerPy("v1 ");

let p: PlatformProcesses;
let owner: { token: string };

beforeAll(async () => {
  p = await startPlatformProcesses();
  owner = await p.user();
  expect((await p.call("POST", "/apps", { token: owner.token, body: { name: APP } })).status).toBe(201);
}, 120_000);
afterAll(async () => p?.close(), 90_000);

const apiAnswers = () => fetch(`${p.apiUrl}/healthz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);

test("apps keep serving while the api is killed and restarted; the new api adopts the instance and rolls out a config change", async () => {
  const repo = await p.repo({ "server.py": serverPy, Procfile: "web: python3 -u server.py\n" });
  const push = await p.git(repo, ["push", p.remote(APP, owner.token), "main"]);
  expect(push.code, `${push.stdout}${push.stderr}\n${await p.output()}`).toBe(0);
  expect(push.stderr).toMatch(/remote:\s+Released v\d+/);
  await expect.poll(async () => (await p.get(HOST)).text, { timeout: 30_000 }).toMatch(/^v1 greeting= boot=[0-9a-f]{16}$/);
  const body = (await p.get(HOST)).text;
  const dynosBefore = (await p.call("GET", `/apps/${APP}/dynos`, { token: owner.token })).body;
  expect(dynosBefore).toEqual([expect.objectContaining({ name: "web.1", state: "up" })]);

  const apiPid = await p.childPid("api");
  expect(apiPid).toBeGreaterThan(0);
  const load = requestLoop(p.get, HOST, { workers: 2, maxRequests: 2000, maxMs: 25_000, paceMs: 5 });
  await expect.poll(() => load.stats.ok, { timeout: 10_000 }).toBeGreaterThan(20);
  const killedAt = Date.now();
  process.kill(apiPid!, "SIGKILL");
  await expect.poll(apiAnswers, { timeout: 10_000 }).toBe(false);
  const okWhenGone = load.stats.ok;
  // start.ts relaunches it after its backoff; the new api migrates, adopts, listens.
  await expect.poll(async () => ((await p.childPid("api")) ?? apiPid) !== apiPid && (await apiAnswers()), { timeout: 45_000 }).toBe(true);
  const absentMs = Date.now() - killedAt;
  const okWhileAbsent = load.stats.ok - okWhenGone;
  const okAtReturn = load.stats.ok;
  await expect.poll(() => load.stats.ok, { timeout: 10_000 }).toBeGreaterThan(okAtReturn + 20);
  const stats = await load.stop();

  expect(stats.endedBy).toBe("stop");
  expect(stats.failed, stats.failures.join("\n")).toBe(0);
  expect(okWhileAbsent).toBeGreaterThan(0);
  // One body: the same process answered every request, before, during and after.
  expect([...stats.bodies.keys()]).toEqual([body]);
  const dynosAfter = (await p.call("GET", `/apps/${APP}/dynos`, { token: owner.token })).body;
  expect(dynosAfter).toEqual([
    expect.objectContaining({ name: "web.1", state: "up", restarts: 0, created_at: dynosBefore[0].created_at, release: expect.objectContaining({ version: dynosBefore[0].release.version }) }),
  ]);

  // The router follows the new api's route feed: a route added now reaches it.
  expect((await p.call("POST", `/apps/${APP}/domains`, { token: owner.token, body: { hostname: "steady.example.test" } })).status).toBe(201);
  await expect.poll(async () => (await p.get("steady.example.test")).text, { timeout: 15_000 }).toBe(body);

  // A config change is a new release, rolled out start-first by the new api, without a failed request.
  const rollout = requestLoop(p.get, HOST, { workers: 2, maxRequests: 2000, maxMs: 25_000, paceMs: 5 });
  await expect.poll(() => rollout.stats.ok, { timeout: 10_000 }).toBeGreaterThan(20);
  expect((await p.call("PATCH", `/apps/${APP}/config-vars`, { token: owner.token, body: { GREETING: "after" } })).status).toBe(200);
  await expect.poll(async () => (await p.get(HOST)).text, { timeout: 30_000 }).toMatch(/^v1 greeting=after boot=/);
  // Until the old instance is gone (stopped, no longer listed), and a little beyond.
  const version = dynosBefore[0].release.version + 1;
  const dynos = async () => (await p.call("GET", `/apps/${APP}/dynos`, { token: owner.token })).body.map((d: any) => `${d.name} ${d.state} v${d.release.version}`);
  await expect.poll(dynos, { timeout: 20_000 }).toEqual([`web.1 up v${version}`]);
  const okAtSwitch = rollout.stats.ok;
  await expect.poll(() => rollout.stats.ok, { timeout: 10_000 }).toBeGreaterThan(okAtSwitch + 20);
  const rolled = await rollout.stop();
  expect(rolled.endedBy).toBe("stop");
  expect(rolled.failed, rolled.failures.join("\n")).toBe(0);
  expect(new Set([...rolled.bodies.keys()].map((b) => b.replace(/ boot=.*/, "")))).toEqual(new Set(["v1 greeting=", "v1 greeting=after"]));
  const releases = (await p.call("GET", `/apps/${APP}/releases`, { token: owner.token })).body;
  expect(releases.at(-1)).toMatchObject({ status: "succeeded", version });

  console.log(
    `control-plane-restart: api absent ${absentMs} ms; ${stats.requests} requests across the kill (${okWhileAbsent} answered while the api was away), ${rolled.requests} across the rollout, ${stats.failed + rolled.failed} failed`,
  );
}, 150_000);
