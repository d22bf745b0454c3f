/**
 * The contract every Runtime passes: a Vitest suite run against a real runtime with
 * a tiny Node HTTP app. local/local.test.ts runs it for runc and for the process
 * fallback; the Kubernetes runtime runs it against a cluster.
 *
 * The app (APP_FILES) is plain Node with no dependencies; the runtime must put a
 * `node` on PATH (its image, or the platform's).
 */
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BootFailed, DYNO_SIZES, type DesiredApp, type DynoSize, type ImageRef, type Instance, type ProcessSpec, type Runtime, type RuntimeEvent } from "./port.ts";

export interface ContractHarness {
  runtime: Runtime;
  /** Moves the runtime's clock on (a ManualClock), or waits that long for a real-clock runtime. */
  advance(ms: number): Promise<void>;
  /** Kills everything the runtime runs; called after every test. */
  stopAll(): Promise<void>;
  /** Instances run as uid 65534, cannot write /usr and do not see the host's processes. */
  isolation: boolean;
  /** Memory limits are enforced and an OOM kill is reported as "out of memory". */
  memoryLimit: boolean;
  /** The first two crash-restart delays. Default [1000, 2000]. */
  backoffMs?: [number, number];
  /** Boot timeout for releases expected to boot. Default 15 s. */
  bootTimeoutMs?: number;
}

/** A web server that answers its release number, plus probes the contract uses. */
export const APP_FILES: Record<string, string> = {
  "server.js": `
const http = require("http");
const fs = require("fs");
const release = process.env.RELEASE || "?";
const hold = [];
const server = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (path === "/") return res.end("release " + release);
  if (path === "/health") return res.end("ok");
  if (path === "/env") return res.end(JSON.stringify(process.env));
  if (path === "/crash") {
    res.end("bye");
    return setTimeout(() => process.exit(1), 10);
  }
  if (path === "/alloc") {
    res.end("allocating");
    return setInterval(() => { for (let i = 0; i < 16; i++) hold.push(Buffer.alloc(1 << 20, 1)); }, 5);
  }
  if (path === "/whoami") {
    let usrWritable = false;
    try { fs.writeFileSync("/usr/.berth-contract-probe", "x", { flag: "wx" }); fs.unlinkSync("/usr/.berth-contract-probe"); usrWritable = true; } catch {}
    const pids = fs.readdirSync("/proc").filter((n) => /^[0-9]+$/.test(n)).length;
    return res.end(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), usrWritable, pids }));
  }
  res.statusCode = 404;
  res.end("not found");
});
server.listen(Number(process.env.PORT), () => console.log("listening on " + process.env.PORT + ", release " + release));
process.on("SIGTERM", () => { server.close(); server.closeAllConnections(); process.exit(0); });
`,
};

const SMALL: DynoSize = DYNO_SIZES.eco!;
const TINY: DynoSize = { name: "tiny", memoryMb: 128, pids: 64, cpuShares: 256 };

/** Registers the suite. `makeApp` turns files into an image the runtime can run. */
export function runtimeContract(
  name: string,
  makeRuntime: () => Promise<ContractHarness>,
  makeApp: (files: Record<string, string>) => Promise<ImageRef>,
): void {
  describe(`Runtime contract: ${name}`, () => {
    let h: ContractHarness;
    let rt: Runtime;
    let image: ImageRef;
    let seq = 0;

    beforeAll(async () => {
      h = await makeRuntime();
      rt = h.runtime;
      image = await makeApp(APP_FILES);
    });
    afterEach(async () => {
      await h.stopAll();
    });
    afterAll(async () => {
      await h?.stopAll();
      await rt?.close();
    });

    const newAppId = () => `contract-${process.pid}-${++seq}`;
    const desired = (appId: string, release: number, over: Partial<DesiredApp> = {}, web: Partial<ProcessSpec> = {}): DesiredApp => ({
      teamId: "contract",
      appId,
      appName: appId,
      release,
      image,
      env: { RELEASE: String(release) },
      processes: [{ type: "web", command: "node server.js", quantity: 1, size: SMALL, ...web }],
      bootTimeoutMs: h.bootTimeoutMs ?? 15_000,
      graceMs: 2_000,
      ...over,
    });
    const web = async (appId: string, dyno = "web.1"): Promise<Instance | undefined> =>
      (await rt.list(appId)).find((i) => i.name === dyno && i.state !== "stopping" && i.state !== "down");
    const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await probe();
        if (v !== undefined) return v;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(20);
      }
    };
    const upWeb = (appId: string, dyno = "web.1") =>
      until(`${dyno} up`, async () => {
        const i = await web(appId, dyno);
        return i?.state === "up" && i.address ? i : undefined;
      });

    it("runs a release: web.1 is up with an address that answers, non-web processes run without one", async () => {
      const app = newAppId();
      await rt.apply(
        desired(app, 1, {
          processes: [
            { type: "web", command: "node server.js", quantity: 1, size: SMALL },
            { type: "worker", command: `node -e "setInterval(() => {}, 1000)"`, quantity: 1, size: SMALL },
          ],
        }),
      );
      const list = await rt.list(app);
      const w = list.find((i) => i.name === "web.1");
      expect(w).toMatchObject({ appId: app, type: "web", release: 1, state: "up", restarts: 0, size: SMALL.name });
      expect(await get(w!.address!, "/")).toBe("release 1");
      const worker = list.find((i) => i.name === "worker.1");
      expect(worker).toMatchObject({ type: "worker", state: "up" });
      expect(worker!.address).toBeUndefined();
      expect((await rt.list()).some((i) => i.appId === app)).toBe(true);
    });

    it("applies start-first: the new release is up before the old stops, and no request is refused", async () => {
      const app = newAppId();
      await rt.apply(desired(app, 1));
      const events: Instance[] = [];
      const unsubscribe = rt.subscribe((e: RuntimeEvent) => {
        if (e.kind === "instance" && e.instance.appId === app) events.push(e.instance);
      });
      const answers = new Set<string>();
      let refused = 0;
      let done = false;
      const poller = (async () => {
        const stopAt = Date.now() + 30_000;
        while (!done && Date.now() < stopAt) {
          // What a router does: send to an instance listed as up.
          const up = (await rt.list(app)).filter((i) => i.state === "up" && i.address).sort((a, b) => b.release - a.release)[0];
          if (!up) {
            refused++;
            await sleep(5);
            continue;
          }
          try {
            answers.add(await get(up.address!, "/"));
          } catch {
            // Only a failure of an instance still listed as up breaks the promise.
            const still = (await rt.list(app)).some((i) => i.state === "up" && i.address?.port === up.address!.port && i.release === up.release);
            if (still) refused++;
          }
        }
      })();
      await sleep(50);
      await rt.apply(desired(app, 2));
      await sleep(100);
      done = true;
      await poller;
      unsubscribe();
      expect(refused).toBe(0);
      expect(answers).toEqual(new Set(["release 1", "release 2"]));
      const newUp = events.findIndex((i) => i.release === 2 && i.state === "up");
      const oldStopping = events.findIndex((i) => i.release === 1 && (i.state === "stopping" || i.state === "down"));
      expect(newUp).toBeGreaterThanOrEqual(0);
      expect(oldStopping).toBeGreaterThan(newUp);
      const after = await rt.list(app);
      expect(after.map((i) => [i.name, i.release, i.state])).toEqual([["web.1", 2, "up"]]);
      expect(await get(after[0]!.address!, "/")).toBe("release 2");
    });

    it("rejects a release that does not boot with BootFailed and keeps the old one serving", async () => {
      const app = newAppId();
      await rt.apply(desired(app, 1));
      const cases: Array<[Partial<DesiredApp>, Partial<ProcessSpec>, RegExp]> = [
        [{ bootTimeoutMs: 1500 }, { command: `node -e "setInterval(() => {}, 1000)"` }, /did not listen on PORT within 1\.5s/],
        [{}, { command: `node -e "process.exit(1)"` }, /exited with code 1/],
        [{ bootTimeoutMs: 1500, healthCheckPath: "/nope" }, {}, /health check GET \/nope answered 404/],
      ];
      for (const [over, proc, reason] of cases) {
        const err = await rt.apply(desired(app, 2, over, proc)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(BootFailed);
        expect((err as BootFailed).reason).toMatch(reason);
        const list = await rt.list(app);
        expect(list.map((i) => [i.name, i.release, i.state])).toEqual([["web.1", 1, "up"]]);
        expect(await get(list[0]!.address!, "/")).toBe("release 1");
      }
      await rt.apply(desired(app, 3, { healthCheckPath: "/health" }));
      expect((await rt.list(app)).map((i) => [i.name, i.release, i.state])).toEqual([["web.1", 3, "up"]]);
    });

    it("scales to 3 and back to 1", async () => {
      const app = newAppId();
      await rt.apply(desired(app, 1));
      await rt.scale(app, "web", 3);
      const three = (await rt.list(app)).filter((i) => i.state === "up");
      expect(three.map((i) => i.name).sort()).toEqual(["web.1", "web.2", "web.3"]);
      expect(new Set(three.map((i) => `${i.address!.host}:${i.address!.port}`)).size).toBe(3);
      for (const i of three) expect(await get(i.address!, "/")).toBe("release 1");
      await rt.scale(app, "web", 1);
      const one = await rt.list(app);
      expect(one.map((i) => [i.name, i.state])).toEqual([["web.1", "up"]]);
      expect(await get(one[0]!.address!, "/")).toBe("release 1");
    });

    it("restarts a crashed instance with backoff, showing it crashed meanwhile", async () => {
      const [first, second] = h.backoffMs ?? [1000, 2000];
      const app = newAppId();
      await rt.apply(desired(app, 1));
      const w1 = await upWeb(app);
      await get(w1.address!, "/crash").catch(() => undefined);
      const crashed = await until("web.1 crashed", async () => ((await web(app))?.state === "crashed" ? web(app) : undefined));
      expect(crashed).toMatchObject({ state: "crashed", lastExit: "exited 1", restarts: 0 });
      expect(crashed!.address).toBeUndefined();

      await h.advance(first);
      const back = await upWeb(app);
      expect(back.restarts).toBe(1);
      expect(await get(back.address!, "/")).toBe("release 1");

      // Second crash in a row: the delay doubles.
      await get(back.address!, "/crash").catch(() => undefined);
      await until("web.1 crashed again", async () => ((await web(app))?.state === "crashed" ? true : undefined));
      await h.advance(first);
      await sleep(200);
      expect((await web(app))?.state).toBe("crashed");
      await h.advance(second - first);
      expect((await upWeb(app)).restarts).toBe(2);
    });

    it("gives the process its config vars, PORT and DYNO", async () => {
      const app = newAppId();
      await rt.apply(desired(app, 1, { env: { RELEASE: "1", GREETING: "hello world", TRICKY: `a "b" = c; $d` } }));
      const w = await upWeb(app);
      const env = JSON.parse(await get(w.address!, "/env")) as Record<string, string>;
      expect(env.GREETING).toBe("hello world");
      expect(env.TRICKY).toBe(`a "b" = c; $d`);
      expect(env.PORT).toMatch(/^[0-9]+$/);
      expect(env.DYNO).toBe("web.1");
    });

    it("runs a one-off command to completion with its exit code and output", async () => {
      const app = newAppId();
      const d = desired(app, 1, { env: { GREETING: "hi" } });
      const r = await rt.runOnce(d, `echo "out $GREETING"; echo err >&2; node -e "console.log(6 * 7)"; exit 3`, { timeoutMs: 10_000 });
      expect(r.exitCode).toBe(3);
      expect(r.output).toContain("out hi");
      expect(r.output).toContain("err");
      expect(r.output).toContain("42");
      const started = Date.now();
      const slow = await rt.runOnce(d, "sleep 10", { timeoutMs: 300 });
      expect(slow.exitCode).not.toBe(0);
      expect(Date.now() - started).toBeLessThan(5_000);
    });

    it("removes an app and leaves nothing running", async () => {
      const app = newAppId();
      await rt.apply(desired(app, 1));
      await rt.scale(app, "web", 2);
      const addresses = (await rt.list(app)).map((i) => i.address!);
      await rt.remove(app);
      expect(await rt.list(app)).toEqual([]);
      expect((await rt.list()).some((i) => i.appId === app)).toBe(false);
      for (const a of addresses) await expect(get(a, "/", 1000)).rejects.toThrow();
    });

    it("kills an app that allocates beyond its size and reports out of memory", async (ctx) => {
      if (!h.memoryLimit) return ctx.skip();
      const app = newAppId();
      await rt.apply(desired(app, 1, {}, { size: TINY }));
      const w = await upWeb(app);
      await get(w.address!, "/alloc");
      const dead = await until("web.1 killed", async () => ((await web(app))?.lastExit === "out of memory" ? web(app) : undefined));
      expect(dead!.state).toBe("crashed");

      const err = await rt.apply(desired(app, 2, {}, { size: TINY, command: `node -e "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1))"` })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BootFailed);
      expect((err as BootFailed).reason).toBe("killed: out of memory");
    });

    it("isolates the instance: uid 65534, read-only /usr, no host processes", async (ctx) => {
      if (!h.isolation) return ctx.skip();
      const app = newAppId();
      await rt.apply(desired(app, 1));
      const w = await upWeb(app);
      const who = JSON.parse(await get(w.address!, "/whoami")) as { uid: number; gid: number; usrWritable: boolean; pids: number };
      expect(who.uid).toBe(65534);
      expect(who.gid).toBe(65534);
      expect(who.usrWritable).toBe(false);
      expect(who.pids).toBeLessThan(10);
    });

    it("freezes an app so it does not answer, and thaws it so it does", async (ctx) => {
      if (!rt.canFreeze) return ctx.skip();
      const app = newAppId();
      await rt.apply(desired(app, 1));
      const w = await upWeb(app);
      await rt.freeze(app);
      expect((await web(app))?.state).toBe("frozen");
      // A request that arrives while frozen waits (the router holds it), and is answered after thawing.
      const held = get(w.address!, "/", 10_000);
      await expect(get(w.address!, "/", 300)).rejects.toThrow();
      await rt.thaw(app);
      expect((await web(app))?.state).toBe("up");
      expect(await held).toBe("release 1");
      expect(await get(w.address!, "/", 2000)).toBe("release 1");
    });
  });
}

/** GET on a fresh connection (no keep-alive pool: every request proves the instance answers). */
export function get(address: { host: string; port: number }, path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address.host, port: address.port, path, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", reject);
    });
    req.once("timeout", () => req.destroy(new Error(`GET ${path} timed out after ${timeoutMs} ms`)));
    req.once("error", reject);
  });
}
