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
  /** The complete environment; implementations add only their `passEnv`. */
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
  /** CFS throttling under a CPU limit (bwrapExec with `cpus`, where the cpu controller is writable). */
  cpu?: { throttledPeriods: number; throttledMs: number };
}

export interface Exec {
  /** Whether the process sees mounts at their targets (a sandbox) or at their sources. */
  readonly remapsPaths: boolean;
  run(req: ExecRequest): Promise<ExecResult>;
}

export interface SpawnExecOptions {
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
 * an output cap. No filesystem isolation: use only with trusted buildpacks, or
 * when the whole builder already runs inside a sandbox.
 */
export function spawnExec(opts: SpawnExecOptions = {}): Exec {
  return {
    remapsPaths: false,
    run: (req) => runProcess(req.argv[0]!, req.argv.slice(1), { cwd: req.cwd, env: { ...opts.passEnv, ...req.env } }, req, opts.maxOutputBytes),
  };
}

export interface BwrapExecOptions extends SpawnExecOptions {
  /** bwrap binary. Default "bwrap" on PATH. */
  bwrap?: string;
  /** Host uid/gid the build runs as. Default 65534 (nobody). Writable mounts are chowned to it. */
  uid?: number;
  gid?: number;
  /** Memory limit in bytes, enforced with a cgroup v1/v2 memory controller when one is writable. */
  memoryBytes?: number;
  /** Process limit, with the pids controller when writable. */
  pids?: number;
  /** CPU limit in cores (fractions allowed), as a CFS quota with the cpu controller when writable. */
  cpus?: number;
  /** Largest file a build may write (RLIMIT_FSIZE, via prlimit). Default 2 GiB. */
  maxFileBytes?: number;
  /** Share the host network (needed for npm/PyPI installs). Default true. */
  network?: boolean;
  /** cgroup v1 root, for tests. Default /sys/fs/cgroup. */
  cgroupRoot?: string;
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
      args.push("--chdir", req.cwd, "--clearenv");
      for (const [k, v] of Object.entries({ ...opts.passEnv, ...req.env })) args.push("--setenv", k, v);
      // bwrap runs as root so that it can bind any source; the build itself drops to uid/gid with no capabilities.
      args.push("--", "setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", ...req.argv);

      const limits = await createCgroup(opts.cgroupRoot ?? "/sys/fs/cgroup", opts.memoryBytes, opts.pids, opts.cpus);
      try {
        // sh joins the cgroups, prlimit sets rlimits, bwrap builds the sandbox, setpriv drops to the build uid.
        const fsize = opts.maxFileBytes ?? 2 * 1024 * 1024 * 1024;
        const script = `${limits.procsFiles.map((f) => `echo $$ > '${f}' && `).join("")}exec "$@"`;
        const wrapped = ["-c", script, "sh", "prlimit", `--fsize=${fsize}`, "--core=0", "--nofile=8192", "--", bwrap, ...args];
        const res = await runProcess("/bin/sh", wrapped, { cwd: "/", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } }, req, opts.maxOutputBytes);
        if (limits.oomKilled && (await limits.oomKilled())) req.onLine(`Build ran out of memory (limit ${Math.round((opts.memoryBytes ?? 0) / 1048576)} MB).`);
        const cpu = await limits.cpuThrottling?.();
        return cpu ? { ...res, cpu } : res;
      } finally {
        await limits.remove();
      }
    },
  };
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
  oomKilled?: () => Promise<boolean>;
  cpuThrottling?: () => Promise<{ throttledPeriods: number; throttledMs: number } | undefined>;
  remove(): Promise<void>;
}

async function createCgroup(root: string, memoryBytes: number | undefined, pids: number | undefined, cpus: number | undefined): Promise<Cgroup> {
  const made: string[] = [];
  const procsFiles: string[] = [];
  const name = `berth-build-${randomBytes(5).toString("hex")}`;
  let memDir: string | undefined;
  let cpuDir: string | undefined;
  const v2 = await fs.access(path.join(root, "cgroup.controllers")).then(() => true, () => false);
  const want: [string, string, string][] = [];
  if (memoryBytes) want.push(v2 ? ["", "memory.max", String(memoryBytes)] : ["memory", "memory.limit_in_bytes", String(memoryBytes)]);
  if (pids) want.push(v2 ? ["", "pids.max", String(pids)] : ["pids", "pids.max", String(pids)]);
  // CFS bandwidth: `cpus` cores' worth of each 100 ms period (v1 needs the period set before the quota).
  const quota = cpus ? Math.max(1000, Math.round(cpus * 100_000)) : 0;
  if (quota) {
    if (v2) want.push(["", "cpu.max", `${quota} 100000`]);
    else want.push(["cpu", "cpu.cfs_period_us", "100000"], ["cpu", "cpu.cfs_quota_us", String(quota)]);
  }
  for (const [controller, file, value] of want) {
    const dir = path.join(root, controller, name);
    try {
      if (!made.includes(dir)) {
        await fs.mkdir(dir);
        made.push(dir);
        procsFiles.push(path.join(dir, "cgroup.procs"));
      }
      await fs.writeFile(path.join(dir, file), value);
      if (file.startsWith("memory")) memDir = dir;
      if (file === "cpu.max" || file === "cpu.cfs_quota_us") cpuDir = dir;
    } catch {
      // No writable controller here: the limit is not enforced (documented in README).
    }
  }
  return {
    procsFiles,
    oomKilled: memDir
      ? async () => {
          const events = await fs.readFile(path.join(memDir!, v2 ? "memory.events" : "memory.oom_control"), "utf8").catch(() => "");
          return /oom_kill [1-9]/.test(events);
        }
      : undefined,
    cpuThrottling: cpuDir
      ? async () => {
          // v1: nr_throttled, throttled_time (ns); v2: nr_throttled, throttled_usec.
          const stat = await fs.readFile(path.join(cpuDir!, "cpu.stat"), "utf8").catch(() => "");
          const num = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, "m").exec(stat)?.[1] ?? NaN);
          const periods = num("nr_throttled");
          const ms = v2 ? num("throttled_usec") / 1000 : num("throttled_time") / 1e6;
          return Number.isFinite(periods) ? { throttledPeriods: periods, throttledMs: Number.isFinite(ms) ? Math.round(ms) : 0 } : undefined;
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
  o: { cwd: string; env: Record<string, string> },
  req: ExecRequest,
  maxOutputBytes = 8 * 1024 * 1024,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(file, args, { cwd: o.cwd, env: o.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    } catch (e) {
      req.onLine(`failed to start ${file}: ${(e as Error).message}`);
      resolve({ code: 127, signal: null, timedOut: false, truncated: false });
      return;
    }
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
