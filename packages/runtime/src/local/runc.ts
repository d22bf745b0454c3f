/**
 * Instances as runc containers. Each container's root is one shared, empty,
 * read-only directory ("base") with read-only binds of the host's /usr and /etc
 * (and /lib, /bin… where they are real directories; merged-/usr symlinks are copied
 * as symlinks). The image is bound read-only at /app and /workspace, launch layers
 * at /layers, the platform's Node binary at /opt/berth/node/bin/node. /tmp is a
 * tmpfs. The process runs as uid/gid 65534 without capabilities, in its own pid,
 * ipc, uts, mount and cgroup namespaces, on the host's network, under the memory,
 * swap, pids and cpu-shares limits of its dyno size.
 *
 * `runc run --keep` runs in the foreground under a supervisor (shim.ts) that outlives
 * this process: runc is the container's parent, so its exit status is the app's and
 * the supervisor records it; without a terminal runc hands its own stdout/stderr, the
 * run dir's `output` file, to the container, so nothing is lost while no runtime
 * watches. --keep leaves the stopped container's cgroup in place until we delete it,
 * so an OOM kill can still be read from memory.oom_control, even by a later runtime.
 * The bundle dir (`bundles/<id>`) is the run dir.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Unavailable, type Logger } from "@berth/core";
import type { Driver, Exit, LaunchSpec, Launched, OutputSink } from "./driver.ts";
import { DYNO_GID, DYNO_UID } from "./image.ts";
import { readSupervisor, RunWatch, supervise, validRunId, type ProcId } from "./shim.ts";

export interface RuncDriverOptions {
  /** Holds runc's own state (`runc --root`), bundles and the shared base root. */
  dir: string;
  /** The runc binary; "runc" from PATH by default. */
  runc?: string;
  /** A Node binary on the host, bound into every container at /opt/berth/node/bin/node. */
  nodeBinary?: string;
  logger: Logger;
}

const NODE_IN_CONTAINER = "/opt/berth/node/bin";
/** Host system directories bound read-only into every container. */
const SYSTEM_DIRS = ["usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
const START_TIMEOUT_MS = 30_000;

/** Creates the driver after a self-test container ran; rejects when runc cannot run containers here. */
export async function createRuncDriver(o: RuncDriverOptions): Promise<Driver> {
  const runc = o.runc ?? "runc";
  const root = path.join(o.dir, "state");
  const bundles = path.join(o.dir, "bundles");
  const base = path.join(o.dir, "base");
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  await fs.mkdir(bundles, { recursive: true, mode: 0o700 });
  const nodeBinary = o.nodeBinary ? await fs.realpath(o.nodeBinary) : undefined;
  const hostBinds = await makeBase(base, nodeBinary !== undefined);
  const swapAccounting = await exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes");

  const run = (args: string[]) => exec(runc, ["--root", root, ...args]);
  const state = async (id: string): Promise<string | undefined> => {
    const r = await run(["state", id]);
    if (r.code !== 0) return undefined;
    return (JSON.parse(r.stdout) as { status?: string }).status;
  };

  /** The handle on a started (or adopted) container. */
  const attach = (id: string, bundle: string, supervisor: ProcId | undefined, offset: number, out: OutputSink, paused: boolean): Launched => {
    const watch = new RunWatch(bundle, offset, out, supervisor);
    let ended = false;
    const exited = watch.ended.then(async (end): Promise<Exit> => {
      ended = true;
      if (end === "lost") {
        // Nobody waits for the container any more: it must not run on unsupervised.
        await run(["resume", id]);
        await run(["kill", "--all", id, "KILL"]);
      }
      const oom = await oomKilled(root, id);
      const del = await run(["delete", "--force", id]);
      if (del.code !== 0 && !/does not exist/.test(del.stderr)) o.logger.warn("runc delete failed", { id, err: del.stderr.trim() });
      await fs.rm(bundle, { recursive: true, force: true });
      return end === "lost" ? { code: 255, oom, lost: true } : { code: end, oom };
    });
    // Thawing is the hot path of a wake from frozen: write the freezer's state file
    // ourselves (what `runc resume` does) instead of spawning runc, ~10-20 ms here.
    // runc reads its "paused" status from the same file, so the two stay consistent.
    let thawFile = paused ? freezerThawFile(root, id) : undefined;
    const resume = async () => {
      thawFile ??= freezerThawFile(root, id);
      const direct = await thawFile;
      if (direct) {
        try {
          // Synchronous on purpose: a few microseconds in the kernel, not a turn in libuv's busy thread pool.
          writeFileSync(direct.file, direct.value);
          paused = false;
          return;
        } catch {
          thawFile = undefined; // the cgroup moved or is gone: let runc say why
        }
      }
      const r = await run(["resume", id]);
      if (r.code !== 0 && !ended) throw new Unavailable(`runc resume ${id}: ${r.stderr.trim()}`);
      paused = false;
    };
    return {
      id,
      exited,
      async signal(sig) {
        if (ended) return;
        // A frozen cgroup cannot act on signals; thaw it first.
        if (paused) await resume().catch(() => undefined);
        await run(["kill", "--all", id, sig.slice(3)]);
      },
      async pause() {
        const r = await run(["pause", id]);
        if (r.code !== 0) throw new Unavailable(`runc pause ${id}: ${r.stderr.trim()}`);
        paused = true;
        thawFile ??= freezerThawFile(root, id); // read now, so the thaw does no file reads
      },
      resume,
      logOffset: () => watch.offset,
      detach: () => watch.detach(),
    };
  };

  const driver: Driver = {
    kind: "runc",
    isolated: true,
    paths: (image) => ({ app: "/app", layers: image.layersDir ? "/layers" : undefined, nodeBin: nodeBinary ? NODE_IN_CONTAINER : undefined }),

    async launch(spec: LaunchSpec, out: OutputSink): Promise<Launched> {
      if (!validRunId(spec.id)) throw new Unavailable(`invalid container id ${JSON.stringify(spec.id)}`);
      const bundle = path.join(bundles, spec.id);
      await fs.mkdir(bundle, { mode: 0o700 });
      const config = containerConfig(spec, { base, hostBinds, nodeBinary, swapAccounting });
      await fs.writeFile(path.join(bundle, "config.json"), JSON.stringify(config));
      const pidFile = path.join(bundle, "pid");
      const fail = async (why: string): Promise<never> => {
        await run(["delete", "--force", spec.id]);
        await fs.rm(bundle, { recursive: true, force: true });
        throw new Unavailable(`runc could not start container ${spec.id}: ${why}`);
      };
      let supervisor: ProcId;
      try {
        supervisor = await supervise(bundle, [runc, "--root", root, "run", "--keep", "--bundle", bundle, "--pid-file", pidFile, spec.id], { cwd: bundle });
      } catch (e) {
        return fail((e as Error).message);
      }
      // runc writes the pid file once the container runs; until then `output` holds runc's own complaints.
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!(await exists(pidFile)) && !(await exists(path.join(bundle, "exit"))) && Date.now() < deadline) await sleep(5);
      if (!(await exists(pidFile))) {
        const said = (await fs.readFile(path.join(bundle, "output"), "utf8").catch(() => "")).trim();
        if (!(await exists(path.join(bundle, "exit")))) await run(["kill", "--all", spec.id, "KILL"]);
        return fail(said || "runc exited without starting it");
      }
      return attach(spec.id, bundle, supervisor, 0, out, false);
    },

    async adopt(id: string, offset: number, out: OutputSink) {
      if (!validRunId(id)) return undefined;
      const bundle = path.join(bundles, id);
      if (!(await exists(bundle))) return undefined;
      const status = await state(id);
      const run = attach(id, bundle, await readSupervisor(bundle), offset, out, status === "paused");
      return { run, paused: status === "paused" };
    },

    async reap(keep: ReadonlySet<string>) {
      const r = await run(["list", "--quiet"]);
      const ids = r.stdout.split("\n").map((l) => l.trim()).filter((id) => id && !keep.has(id));
      await Promise.all(
        ids.map(async (id) => {
          await run(["resume", id]);
          await run(["kill", "--all", id, "KILL"]);
          // The container's init may take a moment to die; delete --force waits for it.
          await run(["delete", "--force", id]);
        }),
      );
      for (const entry of await fs.readdir(bundles)) {
        if (!keep.has(entry)) await fs.rm(path.join(bundles, entry), { recursive: true, force: true });
      }
    },
  };

  await selfTest(driver, o.dir);
  return driver;
}

/** Runs a throwaway container: it must start, run as the dyno user and report its exit code. */
async function selfTest(driver: Driver, dir: string): Promise<void> {
  const app = path.join(dir, "selftest-app");
  await fs.mkdir(app, { recursive: true, mode: 0o755 });
  const lines: string[] = [];
  const launched = await driver.launch(
    {
      id: `berth-selftest-${randomBytes(4).toString("hex")}`,
      dyno: "selftest",
      command: `test "$(id -u)" = ${DYNO_UID} && test -d /app && exit 42`,
      env: { PATH: "/usr/bin:/bin" },
      image: { appDir: app, layerBins: [], env: {} },
      size: { name: "selftest", memoryMb: 64, pids: 16, cpuShares: 64 },
    },
    (l) => lines.push(l),
  );
  const exit = await Promise.race([launched.exited, sleep(10_000).then(() => undefined)]);
  if (!exit) {
    await launched.signal("SIGKILL");
    throw new Unavailable("runc self-test container did not finish within 10s");
  }
  if (exit.code !== 42) throw new Unavailable(`runc self-test container exited ${exit.code}: ${lines.join(" | ")}`);
}

/** The shared root: empty, made read-only by runc; only mount points and merged-/usr symlinks. */
async function makeBase(base: string, withNode: boolean): Promise<string[]> {
  await fs.mkdir(base, { recursive: true, mode: 0o755 });
  const binds: string[] = [];
  for (const name of SYSTEM_DIRS) {
    const host = `/${name}`;
    const st = await fs.lstat(host).catch(() => undefined);
    if (!st) continue;
    const here = path.join(base, name);
    if (st.isSymbolicLink()) {
      const target = await fs.readlink(host);
      const cur = await fs.readlink(here).catch(() => undefined);
      if (cur !== target) {
        await fs.rm(here, { recursive: true, force: true });
        await fs.symlink(target, here);
      }
    } else if (st.isDirectory()) {
      await fs.mkdir(here, { recursive: true });
      binds.push(host);
    }
  }
  for (const d of ["proc", "dev", "sys", "tmp", "app", "workspace", "layers", NODE_IN_CONTAINER.slice(1)]) {
    await fs.mkdir(path.join(base, d), { recursive: true, mode: 0o755 });
  }
  if (withNode) await fs.writeFile(path.join(base, NODE_IN_CONTAINER.slice(1), "node"), "", { flag: "a" });
  return binds;
}

interface Mount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

function containerConfig(
  spec: LaunchSpec,
  o: { base: string; hostBinds: string[]; nodeBinary?: string; swapAccounting: boolean },
): Record<string, unknown> {
  const ro = (source: string, destination: string): Mount => ({ destination, type: "bind", source, options: ["rbind", "ro", "nosuid", "nodev"] });
  const mounts: Mount[] = [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
    ...o.hostBinds.map((d) => ro(d, d)),
    // Counts against the memory limit, like any tmpfs page.
    { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", `size=${Math.min(spec.size.memoryMb, 512) * 1024}k`] },
    ro(spec.image.appDir, "/app"),
    ro(spec.image.appDir, "/workspace"),
  ];
  if (spec.image.layersDir) mounts.push(ro(spec.image.layersDir, "/layers"));
  if (o.nodeBinary) mounts.push(ro(o.nodeBinary, `${NODE_IN_CONTAINER}/node`));

  const bytes = spec.size.memoryMb * 1024 * 1024;
  const none: string[] = [];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: DYNO_UID, gid: DYNO_GID },
      args: ["/bin/sh", "-c", spec.command],
      env: Object.entries(spec.env).filter(([k]) => k !== "" && !k.includes("=")).map(([k, v]) => `${k}=${v}`),
      cwd: "/app",
      capabilities: { bounding: none, effective: none, inheritable: none, permitted: none, ambient: none },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 10240, soft: 10240 }],
      noNewPrivileges: true,
    },
    root: { path: o.base, readonly: true },
    hostname: spec.dyno,
    mounts,
    linux: {
      cgroupsPath: `berth/${spec.id}`,
      resources: {
        devices: [{ allow: false, access: "rwm" }],
        memory: o.swapAccounting ? { limit: bytes, swap: bytes } : { limit: bytes },
        pids: { limit: spec.size.pids },
        cpu: { shares: spec.size.cpuShares },
      },
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "cgroup" }],
      maskedPaths: [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

/** The container's cgroup directories by controller ("" for v2's unified one), from runc's state.json. */
async function cgroupPaths(root: string, id: string): Promise<Record<string, string>> {
  const state = JSON.parse(await fs.readFile(path.join(root, id, "state.json"), "utf8")) as { cgroup_paths?: Record<string, string> };
  return state.cgroup_paths ?? {};
}

/**
 * The file and value that thaw the container's cgroup: freezer.state THAWED on cgroup v1,
 * cgroup.freeze 0 on v2. Undefined when runc's state cannot say.
 */
async function freezerThawFile(root: string, id: string): Promise<{ file: string; value: string } | undefined> {
  try {
    const paths = await cgroupPaths(root, id);
    if (paths.freezer) return { file: path.join(paths.freezer, "freezer.state"), value: "THAWED" };
    if (paths[""]) return { file: path.join(paths[""], "cgroup.freeze"), value: "0" };
  } catch {
    // no state yet, or not runc's format: fall back to runc itself
  }
  return undefined;
}

/** Whether the OOM killer struck in the (stopped, kept) container's memory cgroup. */
async function oomKilled(root: string, id: string): Promise<boolean> {
  try {
    const mem = (await cgroupPaths(root, id)).memory;
    if (!mem) return false;
    const ctl = await fs.readFile(path.join(mem, "memory.oom_control"), "utf8");
    return Number(/oom_kill (\d+)/.exec(ctl)?.[1] ?? 0) > 0;
  } catch {
    return false;
  }
}

function exec(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && !stderr ? err.message : "") });
    });
  });
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
