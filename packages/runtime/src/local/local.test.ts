import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { Invalid, ManualClock, silentLogger, type Logger } from "@berth/core";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { get, runtimeContract } from "../contract.ts";
import { DYNO_SIZES, type DesiredApp, type ImageRef } from "../port.ts";
import { applyLayer } from "./image.ts";
import { createLocalRuntime, type LocalRuntime } from "./index.ts";
import { lineSplitter } from "./lines.ts";
import { describeExit } from "./probe.ts";

const temps: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
}
afterAll(async () => {
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

/** The dyno user (65534) must be able to read the app: mkdtemp makes 0700 dirs. */
async function makeApp(files: Record<string, string>): Promise<ImageRef> {
  const dir = await tempDir("berth-app-");
  await fs.chmod(dir, 0o755);
  for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(dir, name), text, { mode: 0o644 });
  return { kind: "dir", dir };
}

async function makeRuntime(preferRunc: boolean, logger: Logger = silentLogger): Promise<{ rt: LocalRuntime; clock: ManualClock; stateDir: string }> {
  const clock = new ManualClock(Date.now());
  const stateDir = await tempDir("berth-runtime-");
  // Node 24 (this test's own) for the apps; the host's /usr/bin/node is older.
  const rt = await createLocalRuntime({ stateDir, clock, logger, nodeBinary: process.execPath, preferRunc, settleMs: 300 });
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

describe("local runtime helpers", () => {
  it("splits output into lines across chunks, with CRLF, multi-byte characters and an unterminated tail", () => {
    const lines: string[] = [];
    const s = lineSplitter((l) => lines.push(l));
    const euro = Buffer.from("€");
    s.push(Buffer.from("one\r\ntw"));
    s.push(Buffer.concat([Buffer.from("o "), euro.subarray(0, 1)]));
    s.push(Buffer.concat([euro.subarray(1), Buffer.from("\n\nlast")]));
    s.end();
    expect(lines).toEqual(["one", "two €", "", "last"]);
  });

  it("describes exits the way Instance.lastExit and BootFailed say them", () => {
    expect(describeExit({ code: 1, oom: false })).toEqual({ lastExit: "exited 1", reason: "exited with code 1" });
    expect(describeExit({ code: 137, oom: true })).toEqual({ lastExit: "out of memory", reason: "killed: out of memory" });
    expect(describeExit({ code: 139, oom: false })).toEqual({ lastExit: "killed by SIGSEGV", reason: "killed by SIGSEGV" });
  });
});

describe("local runtime", () => {
  const desired = (appId: string, image: ImageRef, command = "node server.js"): DesiredApp => ({
    teamId: "t",
    appId,
    appName: appId,
    release: 1,
    image,
    env: { RELEASE: "1" },
    processes: [{ type: "web", command, quantity: 1, size: DYNO_SIZES.eco! }],
    bootTimeoutMs: 10_000,
    graceMs: 1000,
  });

  it("falls back to plain processes with a warning when runc is missing", async () => {
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (m) => void warnings.push(m), child: () => logger };
    const stateDir = await tempDir("berth-runtime-");
    const rt = await createLocalRuntime({ stateDir, clock: new ManualClock(), logger, runcPath: "/nonexistent/runc" });
    expect(rt.isolation).toBe("process");
    expect(warnings).toContain("runc unavailable: instances run as plain processes, without isolation");
    await rt.close();
  });

  it("leaves no container, bundle or cgroup behind after stopAll", async () => {
    const { rt, stateDir } = await makeRuntime(true);
    const image = await makeApp({ "server.js": `require("http").createServer((q, s) => s.end("x")).listen(process.env.PORT)` });
    await rt.apply(desired("leak-check", image));
    await rt.scale("leak-check", "web", 2);
    const runc = (...args: string[]) => execFileSync("runc", ["--root", path.join(stateDir, "runc", "state"), ...args], { encoding: "utf8" });
    const ids = runc("list", "--quiet").split("\n").filter(Boolean);
    expect(ids).toHaveLength(2);
    await rt.stopAll();
    expect(runc("list", "--quiet").trim()).toBe("");
    expect(await fs.readdir(path.join(stateDir, "runc", "bundles"))).toEqual([]);
    for (const id of ids) await expect(fs.access(`/sys/fs/cgroup/pids/berth/${id}`)).rejects.toThrow();
    await rt.close();
  });

  it("runs an OCI image layout: layers applied in order with whiteouts, then bound at /app", async () => {
    const { rt, stateDir } = await makeRuntime(true);
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
    // Unpacked once per digest.
    expect((await fs.readdir(path.join(stateDir, "images"))).filter((n) => !n.startsWith("."))).toEqual([digest.slice(7)]);
    await rt.stopAll();
    await rt.close();
  });

  it("refuses layer entries that escape the root", async () => {
    const root = await tempDir("berth-root-");
    const outside = await tempDir("berth-outside-");
    const cases = [
      [{ name: "../escape.txt", body: "x" }],
      [
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/escape.txt", body: "x" },
      ],
      [{ name: "hard", type: "link", linkname: "../../etc/passwd" }],
    ] as const;
    for (const entries of cases) {
      const blob = path.join(root, "..", `blob-${path.basename(root)}`);
      const gz = await tarGz([...entries]);
      await fs.writeFile(blob, gz);
      temps.push(blob);
      await expect(applyLayer(root, blob, { digest: sha(gz), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" })).rejects.toBeInstanceOf(Invalid);
    }
    expect(await fs.readdir(outside)).toEqual([]);
  });
});

interface TarEntry {
  name: string;
  body?: string;
  type?: "file" | "directory" | "symlink" | "link";
  mode?: number;
  linkname?: string;
}

async function tarGz(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const header = { name: e.name, type: e.type ?? "file", mode: e.mode ?? (e.type === "directory" ? 0o755 : 0o644), linkname: e.linkname };
    if (header.type === "file") pack.entry(header, e.body ?? "");
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

function sha(b: Buffer | string): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

async function writeLayout(dir: string, layers: Buffer[], env: string[]): Promise<string> {
  const blobs = path.join(dir, "blobs", "sha256");
  await fs.mkdir(blobs, { recursive: true });
  const put = async (b: Buffer | string) => {
    const d = sha(b);
    await fs.writeFile(path.join(blobs, d.slice(7)), b);
    return { digest: d, size: Buffer.byteLength(b) };
  };
  const config = JSON.stringify({ architecture: "amd64", os: "linux", config: { Env: env }, rootfs: { type: "layers", diff_ids: [] } });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...(await put(config)) },
    layers: await Promise.all(layers.map(async (l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...(await put(l)) }))),
  });
  const m = await put(manifest);
  await fs.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await fs.writeFile(path.join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m }] }));
  return m.digest;
}
