/**
 * An app that ignores SIGTERM, on real components (git push, builder, local runtime with
 * runc where it works, router): a new release still goes live, the old instance is
 * SIGKILLed once the grace period has passed, the app's log says so in Heroku's words
 * (R12), and no request through the router fails during the swap.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { processAlive, processesWithEnv, requestLoop, startPlatform, type TestPlatform } from "../harness/platform.ts";
import { bootIdServerPy } from "../harness/apps.ts";

const APP = "stubborn";
const HOST = `${APP}.localhost`;
/** Short for the test; the platform's default is 30 s (BERTH_STOP_GRACE_SECONDS), as on Heroku. */
const GRACE_MS = 1500;

const serverPy = bootIdServerPy();

// runc where this machine runs it (else the runtime falls back, and the test says which it ran); the process fallback always.
describe.each(["runc", "process"] as const)("%s", (isolation) => {
  let p: TestPlatform;
  let owner: { token: string };
  const marker = randomBytes(6).toString("hex");

  beforeAll(async () => {
    p = await startPlatform({ graceMs: GRACE_MS, isolation });
    owner = await p.user();
    expect((await p.call("POST", "/apps", { token: owner.token, body: { name: APP } })).status).toBe(201);
    // MARKER finds this app's processes on the host; set before the first build, so it is in v1's config.
    expect((await p.call("PATCH", `/apps/${APP}/config-vars`, { token: owner.token, body: { MARKER: marker, GREETING: "one" } })).status).toBe(200);
  }, 120_000);
  afterAll(async () => p?.close(), 60_000);

  test("an app that ignores SIGTERM is SIGKILLed after the grace period, logged as R12, while the new release serves every request", async () => {
    // SIG_IGN survives exec: python never sees the TERM.
    const repo = await p.repo({ "server.py": serverPy, Procfile: `web: sh -c 'trap "" TERM; exec python3 -u server.py'\n` });
    const push = await p.git(repo, ["push", p.remote(APP, owner.token), "main"]);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    await expect.poll(async () => (await p.get(HOST)).text, { timeout: 30_000 }).toMatch(/^greeting=one boot=/);

    const app = (await p.call("GET", `/apps/${APP}`, { token: owner.token })).body;
    const [before] = await p.runtime.list(app.id);
    expect(before).toMatchObject({ name: "web.1", state: "up" });
    const oldProcs = await processesWithEnv({ MARKER: marker, PORT: String(before!.address!.port) });
    expect(oldProcs.map((q) => q.comm)).toContain("python3");

    const load = requestLoop(p.get, HOST, { workers: 2, maxRequests: 2000, maxMs: 20_000, paceMs: 5 });
    await expect.poll(() => load.stats.ok, { timeout: 10_000 }).toBeGreaterThan(20);
    expect((await p.call("PATCH", `/apps/${APP}/config-vars`, { token: owner.token, body: { GREETING: "two" } })).status).toBe(200);
    await expect.poll(async () => (await p.get(HOST)).text, { timeout: 30_000 }).toMatch(/^greeting=two boot=/);
    // Gone only by SIGKILL: it ignores TERM, so it outlives the grace period.
    await expect.poll(async () => (await Promise.all(oldProcs.map(processAlive))).some(Boolean), { timeout: GRACE_MS + 15_000 }).toBe(false);
    const okAtKill = load.stats.ok;
    await expect.poll(() => load.stats.ok, { timeout: 10_000 }).toBeGreaterThan(okAtKill + 20);
    const stats = await load.stop();

    expect(stats.endedBy).toBe("stop");
    expect(stats.failed, stats.failures.join("\n")).toBe(0);
    const greetings = new Set([...stats.bodies.keys()].map((b) => b.split(" ")[0]));
    expect(greetings).toEqual(new Set(["greeting=one", "greeting=two"]));

    // The old web.1's stop, in Heroku's words and order.
    const session = await p.call("POST", `/apps/${APP}/log-sessions`, { token: owner.token, body: { lines: 1500, dyno: "web.1", source: "berth" } });
    expect(session.status).toBe(201);
    const expected = [
      "berth[web.1]: Stopping all processes with SIGTERM",
      `berth[web.1]: Error R12 (Exit timeout) -> At least one process failed to exit within ${GRACE_MS / 1000} seconds of SIGTERM`,
      "berth[web.1]: Stopping remaining processes with SIGKILL",
      "berth[web.1]: Process exited with status 137",
    ];
    let log = "";
    const logDeadline = Date.now() + 10_000;
    for (;;) {
      log = await (await fetch(session.body.logplex_url)).text();
      if (expected.every((l) => log.includes(l)) || Date.now() > logDeadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const l of expected) expect(log, `the log should hold "${l}"`).toContain(l);
    const at = expected.map((l) => log.indexOf(l));
    expect(at, log).toEqual([...at].sort((a, b) => a - b));

    const dynos = (await p.call("GET", `/apps/${APP}/dynos`, { token: owner.token })).body;
    const releases = (await p.call("GET", `/apps/${APP}/releases`, { token: owner.token })).body;
    expect(dynos).toEqual([expect.objectContaining({ name: "web.1", state: "up", release: expect.objectContaining({ version: releases.at(-1).version }) })]);
    console.log(`exit-timeout: ${stats.requests} requests through the swap, ${stats.failed} failed; isolation ${p.runtime.isolation}`);
  }, 120_000);
});
