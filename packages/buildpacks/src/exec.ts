/**
 * The Exec port: how the lifecycle runs a buildpack's bin/detect and bin/build.
 *
 * The lifecycle describes what the process may see as `mounts` (host source →
 * path the process sees, read-only or writable) and writes argv/env/cwd in terms
 * of the seen paths. An implementation that cannot remap paths (plain spawn) sets
 * `remapsPaths = false`, and the lifecycle then uses host paths throughout, so
 * source === target for every mount. A sandbox (bubblewrap here, runc later)
 * honours the mounts and shows nothing else of the host's disk but the OS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { randomBytes } from "node:crypto";

export interface Mount {
  /** Path on the host. */
  source: string;
  /** Path the process sees it at. */
  target: string;
  writable: boolean;
  /** Holds the build's own files (e.g. config vars): a sandbox hands it to the build uid even when read-only. */
  owned?: boolean;
}

export interface ExecRequest {
  /** argv[0] is the executable, as the process sees it. */
  argv: string[];
  cwd: string;
  /**
   * The complete environment; implementations add only their `passEnv`, which wins
   * over a variable of the same name here (a config var cannot replace the
   * platform's CA bundle or egress proxy).
   */
  env: Record<string, string>;
  mounts: Mount[];
  timeoutMs: number;
  /** Each line of stdout and stderr, without its newline. */
  onLine: (line: string) => void;
  /** Kills the process group when aborted (a cancelled build). */
  signal?: AbortSignal;
}

export interface ExecResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** True when output went over the cap and later lines were dropped. */
  truncated: boolean;
  /**
   * CPU the process tree used and how long the CFS quota held it back, read from its
   * cgroup before the cgroup is removed (a `cpus` limit in a writable cpu controller).
   */
  cpu?: CpuStats;
  /** Limits asked for but not enforced, because no writable cgroup controller was found for them. */
  unenforced?: LimitName[];
}

export interface CpuStats {
  /** CPU time of every process of the run (cpuacct.usage, or usage_usec in v2); absent when not accounted. */
  usageMs?: number;
  /** CFS periods in which the quota ran out. */
  throttledPeriods: number;
  throttledMs: number;
}

export type LimitName = "memory" | "pids" | "cpu";

/** Resource limits of each run, applied with a cgroup (v1 or v2) per run where the controller is writable. */
export interface ExecLimits {
  /** Memory limit in bytes (memory controller). */
  memoryBytes?: number;
  /** Process limit (pids controller). */
  pids?: number;
  /** CPU limit in cores, fractions allowed: a CFS quota of that many cores' time per 100 ms period (cpu controller). */
  cpus?: number;
  /** cgroup root, for tests. Default /sys/fs/cgroup. */
  cgroupRoot?: string;
}

export interface Exec {
  /** Whether the process sees mounts at their targets (a sandbox) or at their sources. */
  readonly remapsPaths: boolean;
  run(req: ExecRequest): Promise<ExecResult>;
}

export interface SpawnExecOptions extends ExecLimits {
  /**
   * Host variables every buildpack process gets, e.g. CA bundle locations
   * (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, PIP_CERT) or an egress proxy. Never
   * platform secrets: app config vars reach buildpacks only as <platform>/env files.
   */
  passEnv?: Record<string, string>;
  /** Bytes of output forwarded before the rest is dropped. Default 8 MiB. */
  maxOutputBytes?: number;
}

/** Names of host variables that describe trust and egress, safe to hand to builds. */
export const TRUST_ENV_NAMES = [
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "PIP_CERT",
  "REQUESTS_CA_BUNDLE",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
] as const;

/** Picks TRUST_ENV_NAMES from an environment (main.ts passes process.env). */
export function trustEnv(from: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of TRUST_ENV_NAMES) {
    const v = from[k];
    if (v !== undefined && v !== "") out[k] = v;
  }
  return out;
}

/**
 * Runs buildpack executables as plain child processes with exactly the given
 * environment (plus passEnv), a timeout that kills the whole process group, and
 * an output cap; with limits, in cgroups as bwrapExec does. No filesystem
 * isolation: use only with trusted buildpacks, or when the whole builder already
 * runs inside a sandbox.
 */
export function spawnExec(opts: SpawnExecOptions = {}): Exec {
  return {
    remapsPaths: false,
    async run(req) {
      const env = { ...req.env, ...opts.passEnv };
      if (!hasLimits(opts)) return runProcess(req.argv[0]!, req.argv.slice(1), { cwd: req.cwd, env }, req, opts.maxOutputBytes);
      return withCgroup(opts, req, (cg) => runProcess("/bin/sh", ["-c", joinScript(cg), "sh", ...req.argv], { cwd: req.cwd, env }, req, opts.maxOutputBytes));
    },
  };
}

export interface BwrapExecOptions extends SpawnExecOptions {
  /** bwrap binary. Default "bwrap" on PATH. */
  bwrap?: string;
  /** Host uid/gid the build runs as. Default 65534 (nobody). Writable mounts are chowned to it. */
  uid?: number;
  gid?: number;
  /** Largest file a build may write (RLIMIT_FSIZE, via prlimit). Default 2 GiB. */
  maxFileBytes?: number;
  /** Share the host network (needed for npm/PyPI installs). Default true. */
  network?: boolean;
}

/**
 * Runs buildpack executables in a bubblewrap sandbox: a new pid/ipc/uts namespace,
 * an unprivileged uid without capabilities (bwrap itself runs as root, as runc would), the host's /usr, /etc and /lib read-only (the build OS),
 * a private /tmp, and nothing else of the host but the mounts the lifecycle asks
 * for. The network is shared with the host unless `network: false`, because
 * dependency installs need the npm registry and PyPI; the egress policy belongs to
 * the host's network layer.
 */
export function bwrapExec(opts: BwrapExecOptions = {}): Exec {
  const uid = opts.uid ?? 65534;
  const gid = opts.gid ?? 65534;
  const bwrap = opts.bwrap ?? "bwrap";
  return {
    remapsPaths: true,
    async run(req) {
      for (const m of req.mounts) if (m.writable || m.owned) await chownTree(m.source, uid, gid);
      const args = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"];
      if (opts.network === false) args.push("--unshare-net");
      for (const dir of ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]) {
        const st = await fs.lstat(dir).catch(() => null);
        if (st === null) continue;
        if (st.isSymbolicLink()) args.push("--symlink", await fs.readlink(dir), dir);
        else args.push("--ro-bind", dir, dir);
      }
      args.push("--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp");
      // Parents first, so a nested mount lands on top of its parent's.
      const mounts = [...req.mounts].sort((a, b) => a.target.split("/").length - b.target.split("/").length);
      // bwrap (as root) makes missing mount points 0700; the build uid must be able to traverse them.
      const dirs = new Set<string>();
      for (const m of mounts) for (let d = path.posix.dirname(m.target); d !== "/" && !isSystemDir(d); d = path.posix.dirname(d)) dirs.add(d);
      for (const d of [...dirs].sort((a, b) => a.split("/").length - b.split("/").length)) args.push("--perms", "0755", "--dir", d);
      for (const m of mounts) args.push(m.writable ? "--bind" : "--ro-bind", m.source, m.target);
      // The environment is applied after the privilege drop, from a file only the sandbox sees:
      // setpriv runs as root, so LD_PRELOAD or LD_LIBRARY_PATH (a config var, a layer's lib/ or
      // env/ files) must not reach it, and config var values must not appear in any process's
      // argv on the host. bwrap's own arguments (with the host paths) come through --args.
      args.push("--chdir", req.cwd, "--perms", "0444", "--ro-bind-data", "4", SANDBOX_ENV_FILE, "--clearenv", "--setenv", "PATH", SYSTEM_PATH);
      const envFile = shellEnvFile({ ...req.env, ...opts.passEnv });
      // bwrap runs as root so that it can bind any source; the build itself drops to uid/gid with no capabilities.
      const command = ["--", "setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", "/bin/sh", "-c", `. ${SANDBOX_ENV_FILE} && exec "$@"`, "sh", ...req.argv];
      return withCgroup(opts, req, (cg) => {
        // sh joins the cgroups, prlimit sets rlimits, bwrap builds the sandbox, setpriv drops to the build uid.
        const fsize = opts.maxFileBytes ?? 2 * 1024 * 1024 * 1024;
        const wrapped = ["-c", joinScript(cg), "sh", "prlimit", `--fsize=${fsize}`, "--core=0", "--nofile=8192", "--", bwrap, "--args", "3", ...command];
        return runProcess("/bin/sh", wrapped, { cwd: "/", env: { PATH: SYSTEM_PATH }, fds: [args.map((a) => a + "\0").join(""), envFile] }, req, opts.maxOutputBytes);
      });
    },
  };
}

const SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";
/** Where the sandbox finds the run's environment (sourced by sh after setpriv). */
const SANDBOX_ENV_FILE = "/cnb/.env";

/**
 * `export NAME='value'` lines for sh. Names a shell cannot export (e.g. with a dot or
 * a dash) are left out; values are single-quoted, so any byte but NUL survives.
 */
function shellEnvFile(env: Record<string, string>): string {
  let out = "";
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || v.includes("\0")) continue;
    out += `export ${k}='${v.replace(/'/g, `'\\''`)}'\n`;
  }
  return out;
}

/** A shell prefix that moves the shell into the run's cgroups, then execs its arguments. */
function joinScript(cg: Cgroup): string {
  return `${cg.procsFiles.map((f) => `echo $$ > '${f}' && `).join("")}exec "$@"`;
}

const hasLimits = (l: ExecLimits) => Boolean(l.memoryBytes || l.pids || l.cpus);

/**
 * Runs `start` with a fresh cgroup for the run's limits, then reports what the
 * cgroup saw (OOM kill, CPU use and throttling, limits it could not apply) and
 * removes it.
 */
async function withCgroup(limits: ExecLimits, req: ExecRequest, start: (cg: Cgroup) => Promise<ExecResult>): Promise<ExecResult> {
  const cg = await createCgroup(limits.cgroupRoot ?? "/sys/fs/cgroup", limits);
  try {
    const res = await start(cg);
    if (cg.oomKilled && (await cg.oomKilled())) req.onLine(`Build ran out of memory (limit ${Math.round((limits.memoryBytes ?? 0) / 1048576)} MB).`);
    const cpu = await cg.cpuStats?.();
    return { ...res, ...(cpu ? { cpu } : {}), ...(cg.unenforced.length ? { unenforced: cg.unenforced } : {}) };
  } finally {
    await cg.remove();
  }
}

const isSystemDir = (d: string) => ["/usr", "/etc", "/tmp", "/proc", "/dev"].some((s) => d === s || d.startsWith(s + "/"));

/** Whether bubblewrap, setpriv and prlimit are installed and a sandbox can be made (needs root, like runc). */
export async function bwrapAvailable(bwrap = "bwrap"): Promise<boolean> {
  const res = await new Promise<number | null>((resolve) => {
    const p = spawn("/bin/sh", ["-c", `command -v prlimit >/dev/null && ${bwrap} --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --unshare-pid -- setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs -- /usr/bin/true`], { stdio: "ignore", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    p.on("error", () => resolve(null));
    p.on("exit", (code) => resolve(code));
  });
  return res === 0;
}

interface Cgroup {
  procsFiles: string[];
  unenforced: LimitName[];
  oomKilled?: () => Promise<boolean>;
  cpuStats?: () => Promise<CpuStats | undefined>;
  remove(): Promise<void>;
}

/**
 * Makes the cgroups of one run. v1 (one hierarchy per controller): memory, pids and
 * cpu directories, plus cpuacct for the CPU time where it is a separate hierarchy
 * (Debian mounts cpu,cpuacct together; some hosts mount them apart). v2: one
 * directory, after asking the root to delegate the controllers. A limit whose
 * controller cannot be made or written is reported in `unenforced`, never dropped
 * silently.
 */
async function createCgroup(root: string, limits: ExecLimits): Promise<Cgroup> {
  const made: string[] = [];
  const procsFiles: string[] = [];
  const unenforced: LimitName[] = [];
  const name = `berth-build-${randomBytes(5).toString("hex")}`;
  const v2 = await fs.access(path.join(root, "cgroup.controllers")).then(() => true, () => false);
  const dirOf = async (controller: string): Promise<string> => {
    const dir = path.join(root, controller, name);
    if (!made.includes(dir)) {
      await fs.mkdir(dir);
      made.push(dir);
      procsFiles.push(path.join(dir, "cgroup.procs"));
    }
    return dir;
  };
  const apply = async (limit: LimitName, controller: string, files: [string, string][]): Promise<string | undefined> => {
    try {
      if (v2) await fs.appendFile(path.join(root, "cgroup.subtree_control"), `+${controller}`).catch(() => {});
      const dir = await dirOf(v2 ? "" : controller);
      for (const [file, value] of files) await fs.writeFile(path.join(dir, file), value);
      return dir;
    } catch {
      unenforced.push(limit);
      return undefined;
    }
  };
  const memDir = limits.memoryBytes ? await apply("memory", "memory", [[v2 ? "memory.max" : "memory.limit_in_bytes", String(limits.memoryBytes)]]) : undefined;
  if (limits.pids) await apply("pids", "pids", [["pids.max", String(limits.pids)]]);
  // CFS bandwidth: `cpus` cores' worth of each 100 ms period (v1 needs the period set before the quota).
  const quota = limits.cpus ? Math.max(1000, Math.round(limits.cpus * 100_000)) : 0;
  const cpuDir = quota ? await apply("cpu", "cpu", v2 ? [["cpu.max", `${quota} 100000`]] : [["cpu.cfs_period_us", "100000"], ["cpu.cfs_quota_us", String(quota)]]) : undefined;
  let acctFile: string | undefined;
  if (cpuDir && v2) acctFile = path.join(cpuDir, "cpu.stat");
  else if (cpuDir) {
    const [cpuRoot, acctRoot] = await Promise.all([fs.realpath(path.join(root, "cpu")), fs.realpath(path.join(root, "cpuacct")).catch(() => "")]);
    if (acctRoot === cpuRoot) acctFile = path.join(cpuDir, "cpuacct.usage");
    else if (acctRoot) acctFile = await dirOf("cpuacct").then((d) => path.join(d, "cpuacct.usage"), () => undefined);
  }
  return {
    procsFiles,
    unenforced,
    oomKilled: memDir
      ? async () => {
          const events = await fs.readFile(path.join(memDir, v2 ? "memory.events" : "memory.oom_control"), "utf8").catch(() => "");
          return /oom_kill [1-9]/.test(events);
        }
      : undefined,
    cpuStats: cpuDir
      ? async () => {
          // v1: cpu.stat nr_throttled, throttled_time (ns), cpuacct.usage (ns); v2: cpu.stat nr_throttled, throttled_usec, usage_usec.
          const stat = await fs.readFile(path.join(cpuDir, "cpu.stat"), "utf8").catch(() => "");
          const num = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, "m").exec(stat)?.[1] ?? NaN);
          const periods = num("nr_throttled");
          if (!Number.isFinite(periods)) return undefined;
          const ms = v2 ? num("throttled_usec") / 1000 : num("throttled_time") / 1e6;
          const usage = v2 ? num("usage_usec") / 1000 : acctFile ? Number((await fs.readFile(acctFile, "utf8").catch(() => "")).trim() || NaN) / 1e6 : NaN;
          return { throttledPeriods: periods, throttledMs: Number.isFinite(ms) ? Math.round(ms) : 0, ...(Number.isFinite(usage) ? { usageMs: Math.round(usage) } : {}) };
        }
      : undefined,
    async remove() {
      for (const dir of made) {
        // The pid namespace is gone once bwrap exits; retry briefly while the kernel reaps.
        for (let i = 0; i < 20; i++) {
          try {
            await fs.rmdir(dir);
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      }
    },
  };
}

/**
 * Hands a writable mount to the build uid. Subtrees already owned by it are
 * skipped (they were made by an earlier build step), so restored cache layers
 * such as node_modules are not walked again on every build.
 */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  const walk = async (p: string): Promise<void> => {
    const s = await fs.lstat(p).catch(() => null);
    if (s === null || (s.uid === uid && s.gid === gid)) return;
    await fs.lchown(p, uid, gid);
    if (s.isDirectory()) for (const e of await fs.readdir(p)) await walk(path.join(p, e));
  };
  await walk(dir);
}

function runProcess(
  file: string,
  args: string[],
  o: { cwd: string; env: Record<string, string>; fds?: string[] },
  req: ExecRequest,
  maxOutputBytes = 8 * 1024 * 1024,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    const fds = o.fds ?? [];
    try {
      child = spawn(file, args, { cwd: o.cwd, env: o.env, stdio: ["ignore", "pipe", "pipe", ...fds.map(() => "pipe" as const)], detached: true });
    } catch (e) {
      req.onLine(`failed to start ${file}: ${(e as Error).message}`);
      resolve({ code: 127, signal: null, timedOut: false, truncated: false });
      return;
    }
    // Data the child reads from fds 3… (bwrap's --args and --ro-bind-data). A child that
    // exits without reading resets the socket: not an error of ours, its exit code says why.
    fds.forEach((data, i) => {
      const s = child.stdio[3 + i] as NodeJS.WritableStream & NodeJS.EventEmitter;
      s.on("error", () => {});
      s.end(data);
    });
    let outBytes = 0;
    let truncated = false;
    let timedOut = false;
    const emit = (line: string) => {
      if (truncated) return;
      outBytes += line.length + 1;
      if (outBytes > maxOutputBytes) {
        truncated = true;
        req.onLine(`(output over ${Math.round(maxOutputBytes / 1048576)} MB; the rest is not shown)`);
        return;
      }
      req.onLine(line);
    };
    const splitter = () => {
      let buf = "";
      return {
        push(chunk: Buffer) {
          buf += chunk.toString("utf8");
          let i: number;
          while ((i = buf.indexOf("\n")) >= 0) {
            emit(buf.slice(0, i).replace(/\r$/, ""));
            buf = buf.slice(i + 1);
          }
          if (buf.length > 64 * 1024) {
            emit(buf);
            buf = "";
          }
        },
        end() {
          if (buf) emit(buf.replace(/\r$/, ""));
          buf = "";
        },
      };
    };
    const out = splitter();
    const err = splitter();
    child.stdout!.on("data", (c: Buffer) => out.push(c));
    child.stderr!.on("data", (c: Buffer) => err.push(c));
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    const stop = () => {
      killGroup("SIGTERM");
      setTimeout(() => killGroup("SIGKILL"), 2000).unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, req.timeoutMs);
    if (req.signal?.aborted) stop();
    req.signal?.addEventListener("abort", stop, { once: true });
    child.on("error", (e) => {
      clearTimeout(timer);
      req.onLine(`failed to start ${file}: ${e.message}`);
      resolve({ code: 127, signal: null, timedOut: false, truncated });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", stop);
      out.end();
      err.end();
      killGroup("SIGKILL"); // leftovers that kept running after the leader exited
      resolve({ code, signal, timedOut, truncated });
    });
  });
}
