/**
 * A real S3 server for tests: Ceph radosgw (Debian pacific packages) on top of a
 * one-monitor, one-OSD cluster whose OSD keeps objects in memory (memstore).
 * Each call builds its own cluster in its own temp directory (conf, keyrings, run
 * dir, admin sockets, logs, data) on free ports, so test files in parallel workers
 * never share one; stop() kills every daemon and removes the directory.
 *
 * Settings that matter (see shared/design/ENVIRONMENT-NOTES.md):
 * - cephx everywhere: with auth "none" radosgw never connects to the monitor.
 * - Pool size 1, few PGs, autoscale off, chooseleaf type 0: one OSD is a healthy cluster.
 * - paxos propose interval 0.05 s (default 1 s): radosgw creates its pools one
 *   osdmap epoch at a time at start, so this cuts its start from ~11 s to ~1 s.
 * - Only msgr2 on the monitor, on a free port: no fixed 3300/6789.
 *
 * Readiness: ceph's own --connect-timeout while the monitor comes up, then polling
 * GET / on radosgw (anonymous ListBuckets) until 200, bounded by timeoutMs; a daemon
 * that exits meanwhile fails the start at once with the tail of its log.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { presignUrl } from "@berth/blobstore/s3/sigv4";

export interface StartedRadosgw {
  /** "http://127.0.0.1:PORT"; use path-style addressing. */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** A bucket created for the caller, empty at start. */
  bucket: string;
  /** Milliseconds from the call to ready. */
  startupMs: number;
  stop(): Promise<void>;
}

export interface StartRadosgwOptions {
  bucket?: string;
  /** Deadline for the whole start (default 60 s; a first-time apt install comes on top). */
  timeoutMs?: number;
}

const ACCESS_KEY = "BERTHTESTACCESSKEY00";
const SECRET_KEY = "berth-test-secret-key-0000000000000000000";
const REGION = "us-east-1";
const BINARIES = ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool"];

/** Every daemon any call started and has not stopped, killed if the process exits early. */
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export async function startRadosgw(opts: StartRadosgwOptions = {}): Promise<StartedRadosgw> {
  const t0 = performance.now();
  await ensureInstalled();
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const remaining = () => Math.max(1, deadline - Date.now());
  const dir = await mkdtemp(join(tmpdir(), "berth-rgw-"));
  const children: ChildProcess[] = [];
  let watchdog: ChildProcess | undefined;
  const stop = async () => {
    watchdog?.kill("SIGKILL");
    // SIGKILL: the data is thrown away, and memstore would otherwise write it all
    // to disk on a clean shutdown.
    await Promise.all(children.map(killAndWait));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const sub of ["run", "log", "mon", "osd/ceph-0", "crash"]) await mkdir(join(dir, sub), { recursive: true });
    const [monPort, rgwPort] = (await freePorts(2)) as [number, number];
    const fsid = randomUUID();
    const monAddr = `[v2:127.0.0.1:${monPort}]`;
    const conf = join(dir, "ceph.conf");
    const keys = { mon: cephxKey(), admin: cephxKey(), rgw: cephxKey(), osd: cephxKey() };
    await writeFile(conf, cephConf(dir, fsid, monAddr, rgwPort));
    await writeFile(
      join(dir, "mon.keyring"),
      keyring("mon.", keys.mon, { mon: "allow *" }) +
        keyring("client.admin", keys.admin, { mon: "allow *", osd: "allow *", mgr: "allow *" }) +
        keyring("client.rgw.a", keys.rgw, { mon: "allow rw", osd: "allow rwx" }),
    );
    await writeFile(join(dir, "admin.keyring"), keyring("client.admin", keys.admin));
    await writeFile(join(dir, "rgw.keyring"), keyring("client.rgw.a", keys.rgw));
    await writeFile(join(dir, "osd/ceph-0/keyring"), keyring("osd.0", keys.osd));

    const c = ["-c", conf];
    await run("monmaptool", ["--create", "--addv", "a", monAddr, "--fsid", fsid, join(dir, "monmap")], remaining());
    await run("ceph-mon", [...c, "--mkfs", "-i", "a", "--monmap", join(dir, "monmap"), "--keyring", join(dir, "mon.keyring")], remaining());
    children.push(daemon("ceph-mon", [...c, "-f", "-i", "a"], dir));

    const osdUuid = randomUUID();
    // --connect-timeout makes the CLI wait for the monitor that is still starting.
    const connectTimeout = String(Math.ceil(remaining() / 1000));
    await Promise.all([
      run("ceph", [...c, "--connect-timeout", connectTimeout, "osd", "new", osdUuid, "0", "-i", "-"], remaining(), JSON.stringify({ cephx_secret: keys.osd })),
      run("ceph-osd", [...c, "--no-mon-config", "-i", "0", "--mkfs", "--osd-uuid", osdUuid], remaining()),
    ]);
    children.push(daemon("ceph-osd", [...c, "-f", "-i", "0"], dir));
    children.push(daemon("radosgw", [...c, "-f", "-n", "client.rgw.a"], dir));
    watchdog = startWatchdog(dir, children);

    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await poll(deadline, children, dir, async () => {
      const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return res.status === 200;
    });
    await run(
      "radosgw-admin",
      [...c, "user", "create", "--uid=berth-test", "--display-name=berth test", `--access-key=${ACCESS_KEY}`, `--secret-key=${SECRET_KEY}`],
      remaining(),
    );
    const bucket = opts.bucket ?? "berth-test";
    await createBucket(endpoint, bucket);
    return {
      endpoint,
      accessKeyId: ACCESS_KEY,
      secretAccessKey: SECRET_KEY,
      region: REGION,
      bucket,
      startupMs: Math.round(performance.now() - t0),
      stop,
    };
  } catch (e) {
    const logs = await logTails(dir);
    await stop();
    throw new Error(`radosgw did not start: ${(e as Error).message}\n${logs}`, { cause: e });
  }
}

function cephConf(dir: string, fsid: string, monAddr: string, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = ${monAddr}
mon initial members = a
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
run dir = ${dir}/run
admin socket = ${dir}/run/$cluster-$name.asok
pid file = ${dir}/run/$cluster-$name.pid
log file = ${dir}/log/$cluster-$name.log
crash dir = ${dir}/crash
log to stderr = false
err to stderr = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.05
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 1073741824

[mon]
keyring = ${dir}/mon.keyring

[osd]
keyring = ${dir}/osd/$cluster-$id/keyring

[client.admin]
keyring = ${dir}/admin.keyring

[client.rgw.a]
keyring = ${dir}/rgw.keyring
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`;
}

/** A cephx secret as ceph-authtool --gen-print-key makes it: type 1 (AES), creation time, 16 random bytes. */
function cephxKey(): string {
  const buf = Buffer.alloc(28);
  buf.writeUInt16LE(1, 0);
  buf.writeUInt32LE(Math.floor(Date.now() / 1000), 2);
  buf.writeUInt32LE(0, 6);
  buf.writeUInt16LE(16, 10);
  randomBytes(16).copy(buf, 12);
  return buf.toString("base64");
}

function keyring(entity: string, key: string, caps: Record<string, string> = {}): string {
  const lines = [`[${entity}]`, `\tkey = ${key}`];
  for (const [service, cap] of Object.entries(caps)) lines.push(`\tcaps ${service} = "${cap}"`);
  return lines.join("\n") + "\n";
}

/** Creates the bucket with a presigned PUT: the harness needs no S3 client of its own. */
async function createBucket(endpoint: string, bucket: string): Promise<void> {
  const url = presignUrl({
    method: "PUT",
    url: new URL(`${endpoint}/${bucket}`),
    region: REGION,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
    expiresInSec: 60,
    now: new Date(),
  });
  const res = await fetch(url, { method: "PUT" });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`creating bucket ${bucket}: HTTP ${res.status} ${body}`);
}

function run(cmd: string, args: string[], timeoutMs: number, stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: "SIGKILL", env: cephEnv() }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    // A tool that exits without reading its input must not crash us with EPIPE.
    child.stdin?.on("error", () => {});
    child.stdin?.end(stdin ?? "");
  });
}

function daemon(cmd: string, args: string[], dir: string): ChildProcess {
  const child = spawn(cmd, args, { cwd: dir, env: cephEnv(), stdio: "ignore" });
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** The caller's environment without anything that would point ceph tools elsewhere. */
function cephEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.CEPH_ARGS;
  delete env.CEPH_CONF;
  env.DEBIAN_FRONTEND = "noninteractive";
  return env;
}

/**
 * If this process dies without stop() (a killed test worker fires no "exit" event),
 * a detached shell kills the daemons and removes the directory within a second.
 */
function startWatchdog(dir: string, children: ChildProcess[]): ChildProcess {
  const pids = children.map((ch) => ch.pid).filter((p) => p !== undefined);
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 ${pids.join(" ")} 2>/dev/null; rm -rf "$1"`;
  const child = spawn("sh", ["-c", script, "sh", dir], { detached: true, stdio: "ignore" });
  child.unref();
  return child;
}

function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/** Polls ready() every 100 ms until it is true, the deadline passes, or a daemon dies. */
async function poll(deadline: number, children: ChildProcess[], dir: string, ready: () => Promise<boolean>): Promise<void> {
  let last: unknown;
  while (Date.now() < deadline) {
    const dead = children.find((ch) => ch.exitCode !== null || ch.signalCode !== null);
    if (dead) throw new Error(`${dead.spawnfile} exited (${dead.exitCode ?? dead.signalCode}) during start in ${dir}`);
    try {
      if (await ready()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`radosgw not ready before the deadline (last error: ${String(last)})`);
}

async function logTails(dir: string): Promise<string> {
  const out: string[] = [];
  for (const name of ["ceph-mon.a.log", "ceph-osd.0.log", "ceph-client.rgw.a.log"]) {
    const text = await readFile(join(dir, "log", name), "utf8").catch(() => "");
    if (text) out.push(`--- ${name}\n${text.split("\n").slice(-15).join("\n")}`);
  }
  return out.join("\n");
}

async function freePorts(n: number): Promise<number[]> {
  // Hold all listeners open together so the ports are distinct.
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

let installed: Promise<void> | undefined;

/** Installs the Debian packages when missing (scripts/ensure-deps.sh does it in CI). */
function ensureInstalled(): Promise<void> {
  installed ??= (async () => {
    const has = (bin: string) =>
      run("sh", ["-c", `command -v ${bin}`], 10_000).then(
        () => true,
        () => false,
      );
    const missing = (await Promise.all(BINARIES.map(async (b) => ((await has(b)) ? null : b)))).filter((b) => b !== null);
    if (missing.length === 0) return;
    if (process.getuid?.() !== 0) {
      throw new Error(`radosgw harness: missing ${missing.join(", ")}; run scripts/ensure-deps.sh as root`);
    }
    const apt = ["-o", "DPkg::Lock::Timeout=600"];
    await run("apt-get", [...apt, "update", "-qq"], 300_000);
    await run(
      "apt-get",
      [...apt, "install", "-y", "-qq", "--no-install-recommends", "radosgw", "ceph-mon", "ceph-osd", "ceph-base"],
      600_000,
    );
  })();
  installed.catch(() => {
    installed = undefined;
  });
  return installed;
}
