import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ManualClock, silentLogger, type Logger } from "@berth/core";
import { afterAll, describe, expect, it } from "vitest";
import { get, runtimeContract } from "../contract.ts";
import { DYNO_SIZES, type DesiredApp, type ImageRef, type Instance } from "../port.ts";
import { createLocalRuntime, type LocalRuntime, type LocalRuntimeOptions } from "./index.ts";
import { makeApp, removeTemps, tarGz, tempDir, writeLayout } from "./testing.ts";

/** State dirs of this file: whatever a failed test left running there is killed at the end. */
const stateDirs = new Map<string, boolean>();

afterAll(async () => {
  for (const [stateDir, preferRunc] of stateDirs) {
    const rt = await createLocalRuntime({ stateDir, clock: new ManualClock(), logger: silentLogger, preferRunc });
    await rt.stopAll();
    await rt.close();
  }
  await removeTemps();
});

async function makeRuntime(preferRunc: boolean, over: Partial<LocalRuntimeOptions> = {}): Promise<{ rt: LocalRuntime; clock: ManualClock; stateDir: string }> {
  const clock = new ManualClock(Date.now());
  const stateDir = over.stateDir ?? (await tempDir("berth-runtime-"));
  stateDirs.set(stateDir, preferRunc);
  // Node 24 (this test's own) for the apps; the host's /usr/bin/node is older.
  const rt = await createLocalRuntime({ stateDir, clock, logger: silentLogger, nodeBinary: process.execPath, preferRunc, settleMs: 300, ...over });
  return { rt, clock, stateDir };
}

for (const preferRunc of [true, false]) {
  const mode = preferRunc ? "runc" : "process";
  runtimeContract(
    `local (${mode})`,
    async () => {
      const { rt, clock } = await makeRuntime(preferRunc);
      // CI installs runc (scripts/ensure-deps.sh): a silent fallback would hide isolation failures.
      expect(rt.isolation).toBe(mode);
      expect(rt.canFreeze).toBe(true);
      return {
        runtime: rt,
        advance: async (ms) => clock.advance(ms),
        stopAll: () => rt.stopAll(),
        isolation: preferRunc,
        memoryLimit: preferRunc,
      };
    },
    makeApp,
  );
}

/** Logs every request; answers its release; /crash exits 1. */
const LOGGING_SERVER = `
const http = require("http");
const server = http.createServer((req, res) => {
  console.log("GET " + req.url);
  if (req.url === "/crash") { res.end("bye"); return setTimeout(() => process.exit(1), 10); }
  res.end("release " + process.env.RELEASE);
});
setTimeout(() => server.listen(Number(process.env.PORT)), Number(process.env.LISTEN_AFTER_MS || 0));
process.on("SIGTERM", () => process.exit(0));
`;

const desired = (appId: string, image: ImageRef, release = 1, env: Record<string, string> = {}): DesiredApp => ({
  teamId: "t",
  appId,
  appName: appId,
  release,
  image,
  env: { RELEASE: String(release), ...env },
  processes: [{ type: "web", command: "node server.js", quantity: 1, size: DYNO_SIZES.eco! }],
  bootTimeoutMs: 10_000,
  graceMs: 1000,
});

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const web1 = async (rt: LocalRuntime, appId: string): Promise<Instance | undefined> => (await rt.list(appId)).find((i) => i.name === "web.1");
const summary = async (rt: LocalRuntime, appId: string) => (await rt.list(appId)).map((i) => [i.name, i.release, i.state]);

/**
 * Live processes whose working directory or command line mentions one of `dirs` (an app dir,
 * a state dir). A killed process may take a moment to be gone: this waits up to 5 s for none.
 */
async function processesUnder(...dirs: string[]): Promise<string[]> {
  const scan = async () => {
    const found: string[] = [];
    for (const pid of await fs.readdir("/proc")) {
      if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
      const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (state === "" || state === "Z" || state === "X") continue;
      const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => "");
      const cmd = (await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
      if (dirs.some((d) => cwd.startsWith(d) || cmd.includes(d))) found.push(`${pid} (${state}, cwd ${cwd}): ${cmd}`);
    }
    return found;
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = await scan();
    if (found.length === 0 || Date.now() > deadline) return found;
    await sleep(50);
  }
}

const runcList = (stateDir: string) =>
  execFileSync("runc", ["--root", path.join(stateDir, "runc", "state"), "list", "--quiet"], { encoding: "utf8" }).split("\n").filter(Boolean);

describe("local runtime", () => {
  it("falls back to plain processes with a warning when runc is missing", async () => {
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (m) => void warnings.push(m), child: () => logger };
    const stateDir = await tempDir("berth-runtime-");
    const rt = await createLocalRuntime({ stateDir, clock: new ManualClock(), logger, runcPath: "/nonexistent/runc" });
    expect(rt.isolation).toBe("process");
    expect(warnings).toContain("runc unavailable: instances run as plain processes, without isolation");
    await rt.close();
  });

  it("leaves no container, bundle, cgroup, record or process behind after stopAll", async () => {
    const { rt, stateDir } = await makeRuntime(true);
    const image = await makeApp({ "server.js": `require("http").createServer((q, s) => s.end("x")).listen(process.env.PORT)` });
    await rt.apply(desired("leak-check", image));
    await rt.scale("leak-check", "web", 2);
    const ids = runcList(stateDir);
    expect(ids).toHaveLength(2);
    expect((await fs.readdir(path.join(stateDir, "apps"))).filter((n) => n.endsWith(".json"))).toHaveLength(1);
    await rt.stopAll();
    expect(runcList(stateDir)).toEqual([]);
    expect(await fs.readdir(path.join(stateDir, "runc", "bundles"))).toEqual([]);
    expect(await fs.readdir(path.join(stateDir, "apps"))).toEqual([]);
    for (const id of ids) await expect(fs.access(`/sys/fs/cgroup/pids/berth/${id}`)).rejects.toThrow();
    expect(await processesUnder((image as { dir: string }).dir, stateDir)).toEqual([]);
    // And it keeps working (and recording) afterwards.
    await rt.apply(desired("leak-check", image));
    await until("a record", async () => ((await fs.readdir(path.join(stateDir, "apps"))).some((n) => n.endsWith(".json")) ? true : undefined));
    await rt.stopAll();
    await rt.close();
  });

  it("runs an OCI image layout: layers applied in order with whiteouts, bound at /app; unused images are pruned", async () => {
    const { rt, stateDir } = await makeRuntime(true, { keepUnusedImages: 0 });
    const layout = await tempDir("berth-layout-");
    const layer1 = await tarGz([
      { name: "workspace/", type: "directory", mode: 0o755 },
      { name: "workspace/server.js", body: `require("http").createServer((q, s) => s.end(require("fs").readdirSync("/app").join(","))).listen(process.env.PORT)` },
      { name: "workspace/gone.txt", body: "lower" },
      { name: "workspace/dir/", type: "directory", mode: 0o755 },
      { name: "workspace/dir/old.txt", body: "lower" },
      { name: "layers/bp/tool/bin/hello", body: "#!/bin/sh\necho hello from a layer\n", mode: 0o755 },
    ]);
    const layer2 = await tarGz([
      { name: "workspace/.wh.gone.txt", body: "" },
      { name: "workspace/dir/.wh..wh..opq", body: "" },
      { name: "workspace/dir/new.txt", body: "upper" },
    ]);
    const digest = await writeLayout(layout, [layer1, layer2], ["FROM_IMAGE=yes"]);
    const image: ImageRef = { kind: "layout", dir: layout, digest };
    await rt.apply(desired("layout-app", image));
    const [w] = await rt.list("layout-app");
    expect((await get(w!.address!, "/")).split(",").sort()).toEqual(["dir", "server.js"]);
    const r = await rt.runOnce(desired("layout-app", image), "ls /app/dir; hello; echo $FROM_IMAGE", { timeoutMs: 10_000 });
    expect(r.output.split("\n").filter(Boolean)).toEqual(["new.txt", "hello from a layer", "yes"]);

    // A new release with another top layer: once it runs, the first image and its own layer go.
    const layer3 = await tarGz([{ name: "workspace/dir/newer.txt", body: "newer" }]);
    const digest2 = await writeLayout(layout, [layer1, layer3], []);
    await rt.apply(desired("layout-app", { kind: "layout", dir: layout, digest: digest2 }, 2));
    await rt.pruneImages();
    const cache = path.join(stateDir, "images");
    expect(await fs.readdir(path.join(cache, "images"))).toEqual([`${digest2.slice(7)}.json`]);
    expect((await fs.readdir(path.join(cache, "layers"))).length).toBe(2);
    await rt.stopAll();
    await rt.close();
  });

  it("answers a one-off that runs too long with exit code 124 and says so", async () => {
    const { rt } = await makeRuntime(false);
    const image = await makeApp({});
    const started = Date.now();
    const r = await rt.runOnce(desired("one-off", image), "echo started; sleep 10", { timeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r).toEqual({ exitCode: 124, output: "started\nberth: timed out after 0.3s, killed\n" });
    await rt.stopAll();
    await rt.close();
  });

  it("freezes an instance that is still starting once it is ready", async () => {
    const { rt, clock } = await makeRuntime(false);
    const image = await makeApp({ "server.js": LOGGING_SERVER });
    await rt.apply(desired("slow", image, 1, { LISTEN_AFTER_MS: "300" }));
    await get((await web1(rt, "slow"))!.address!, "/crash").catch(() => undefined);
    await until("crashed", async () => ((await web1(rt, "slow"))?.state === "crashed" ? true : undefined));
    clock.advance(1000);
    expect((await web1(rt, "slow"))?.state).toBe("starting");
    await rt.freeze("slow");
    const w = (await web1(rt, "slow"))!;
    expect(w.state).toBe("frozen");
    await expect(get(w.address!, "/", 300)).rejects.toThrow();
    await rt.thaw("slow");
    expect(await get(w.address!, "/")).toBe("release 1");
    await rt.stopAll();
    await rt.close();
  });

  for (const preferRunc of [true, false]) {
    const mode = preferRunc ? "runc" : "process";
    it(`keeps instances running when the runtime closes, and the next runtime on the state dir adopts them (${mode})`, async () => {
      const { rt: rt1, stateDir } = await makeRuntime(preferRunc);
      expect(rt1.isolation).toBe(mode);
      const image = await makeApp({ "server.js": LOGGING_SERVER });
      const appDir = (image as { dir: string }).dir;
      await rt1.apply(desired("adopt", image, 1));
      const first = (await web1(rt1, "adopt"))!;
      await rt1.close(); // the API process exits
      // Logged while no runtime watches.
      expect(await get(first.address!, "/while-nobody-watches")).toBe("release 1");

      const started = performance.now();
      const { rt: rt2, clock } = await makeRuntime(preferRunc, { stateDir });
      const adoptMs = performance.now() - started;
      const logs: string[] = [];
      rt2.subscribe((e) => {
        if (e.kind === "log" && e.line.source === "app") logs.push(e.line.text);
      });
      expect(await web1(rt2, "adopt")).toMatchObject({ name: "web.1", release: 1, state: "up", address: first.address, restarts: 0 });
      await get(first.address!, "/after-adoption");
      await until("the adopted instance's output", () => (logs.includes("GET /after-adoption") ? true : undefined));
      // Each line once: nothing from before the first runtime closed, nothing twice.
      expect(logs).toEqual(["GET /while-nobody-watches", "GET /after-adoption"]);

      // Crash detection and backoff work on an adopted instance.
      await get(first.address!, "/crash").catch(() => undefined);
      await until("crashed", async () => ((await web1(rt2, "adopt"))?.state === "crashed" ? true : undefined));
      clock.advance(1000);
      const back = await until("up again", async () => {
        const w = await web1(rt2, "adopt");
        return w?.state === "up" ? w : undefined;
      });
      expect(back.restarts).toBe(1);

      // A start-first deploy through the new runtime replaces the adopted instance.
      await rt2.apply(desired("adopt", image, 2));
      expect(await summary(rt2, "adopt")).toEqual([["web.1", 2, "up"]]);
      const second = (await web1(rt2, "adopt"))!;
      expect(await get(second.address!, "/")).toBe("release 2");

      // Frozen survives a restart of the runtime too.
      await rt2.freeze("adopt");
      await rt2.close();
      const { rt: rt3 } = await makeRuntime(preferRunc, { stateDir });
      expect(await web1(rt3, "adopt")).toMatchObject({ release: 2, state: "frozen", address: second.address });
      await rt3.thaw("adopt");
      expect(await get(second.address!, "/")).toBe("release 2");
      await rt3.scale("adopt", "web", 2);
      expect(await summary(rt3, "adopt")).toEqual([
        ["web.1", 2, "up"],
        ["web.2", 2, "up"],
      ]);

      await rt3.stopAll();
      await rt3.close();
      await expect(get(second.address!, "/", 1000)).rejects.toThrow();
      if (preferRunc) expect(runcList(stateDir)).toEqual([]);
      expect(await processesUnder(appDir, stateDir)).toEqual([]);
      // A figure for the README, not a limit.
      expect(adoptMs).toBeLessThan(10_000);
    });
  }

  for (const preferRunc of [true, false]) {
    const mode = preferRunc ? "runc" : "process";
    it(`adopts the instances of a runtime whose process was killed (${mode})`, async () => {
      const stateDir = await tempDir("berth-runtime-");
      stateDirs.set(stateDir, preferRunc);
      const image = await makeApp({ "server.js": LOGGING_SERVER });
      const script = path.join(await tempDir("berth-child-"), "api.ts");
      const here = (p: string) => new URL(p, import.meta.url).pathname;
      await fs.writeFile(
        script,
        `import { systemClock, silentLogger } from ${JSON.stringify(here("../../../core/src/index.ts"))};
import { createLocalRuntime } from ${JSON.stringify(here("./index.ts"))};
const rt = await createLocalRuntime({ stateDir: process.argv[2], clock: systemClock, logger: silentLogger, nodeBinary: process.execPath, preferRunc: ${preferRunc} });
await rt.apply(JSON.parse(process.argv[3]));
console.log(JSON.stringify(await rt.list()));
setInterval(() => {}, 1000);
`,
      );
      const child = spawn(process.execPath, [script, stateDir, JSON.stringify(desired("killed", image))], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      const listed = await until("the child's apply", () => (out.includes("\n") ? (JSON.parse(out) as Instance[]) : undefined), 20_000);
      const address = listed[0]!.address!;
      child.kill("SIGKILL"); // the API crashes: no close(), no goodbye
      await once(child, "exit");
      expect(await get(address, "/")).toBe("release 1");

      const { rt } = await makeRuntime(preferRunc, { stateDir });
      expect(await summary(rt, "killed")).toEqual([["web.1", 1, "up"]]);
      expect((await web1(rt, "killed"))!.address).toEqual(address);
      await rt.apply(desired("killed", image, 2));
      expect(await get((await web1(rt, "killed"))!.address!, "/")).toBe("release 2");
      await rt.stopAll();
      await rt.close();
      expect(await processesUnder((image as { dir: string }).dir, stateDir)).toEqual([]);
    });
  }

  it("kills instances whose record is gone or invalid when the next runtime starts", async () => {
    const { rt: rt1, stateDir } = await makeRuntime(false);
    const image = await makeApp({ "server.js": LOGGING_SERVER });
    await rt1.apply(desired("kept", image));
    await rt1.apply(desired("corrupt", image));
    await rt1.apply(desired("forgotten", image));
    const address = async (app: string) => (await web1(rt1, app))!.address!;
    const [kept, corrupt, forgotten] = await Promise.all(["kept", "corrupt", "forgotten"].map(address));
    await rt1.close();
    const records = path.join(stateDir, "apps");
    const byApp = new Map<string, string>();
    for (const name of await fs.readdir(records)) {
      byApp.set((JSON.parse(await fs.readFile(path.join(records, name), "utf8")) as { appId: string }).appId, path.join(records, name));
    }
    await fs.writeFile(byApp.get("corrupt")!, "{ not json");
    await fs.rm(byApp.get("forgotten")!);

    const { rt: rt2 } = await makeRuntime(false, { stateDir });
    expect((await rt2.list()).map((i) => i.appId)).toEqual(["kept"]);
    expect(await get(kept!, "/")).toBe("release 1");
    for (const a of [corrupt!, forgotten!]) await expect(get(a, "/", 1000)).rejects.toThrow();
    await rt2.stopAll();
    await rt2.close();
    expect(await processesUnder((image as { dir: string }).dir, stateDir)).toEqual([]);
  });
});
