/**
 * Process plumbing for the bench: free ports, waiting for listeners, child processes
 * that are always stopped, resident memory of a process tree from /proc, and the
 * teardown stack every part registers its resources with.
 */
import { spawn, execFile, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { request } from "node:http";
import { createServer, Socket, type AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

export const run = promisify(execFile);

/** Bench progress goes to stderr; stdout stays free for a caller that wants the JSON path. */
export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** LIFO teardown: everything a part starts is registered here right after it starts. */
export class Teardown {
  #steps: { name: string; fn: () => Promise<unknown> | unknown }[] = [];

  add(name: string, fn: () => Promise<unknown> | unknown): void {
    this.#steps.push({ name, fn });
  }

  /** Runs every step (newest first) even when some fail; each gets at most `stepMs`. */
  async run(stepMs = 60_000): Promise<void> {
    while (this.#steps.length) {
      const s = this.#steps.pop()!;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(s.fn),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${stepMs} ms`)), stepMs);
          }),
        ]);
      } catch (e) {
        log(`teardown of ${s.name} failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export interface HttpAnswer {
  status: number;
  body: string;
  /** Milliseconds from sending the request to the response head (first byte). */
  ttfbMs: number;
}

/** One GET on a fresh connection to 127.0.0.1:port with an optional Host header. */
export function httpGet(port: number, path = "/", opts: { host?: string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ host: "127.0.0.1", port, path, agent: false, headers: opts.host ? { Host: opts.host } : {}, timeout: opts.timeoutMs ?? 30_000 }, (res) => {
      const ttfbMs = performance.now() - t0;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), ttfbMs }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path} on port ${port} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Polls until `ok(answer)` (connection refused counts as not yet) and returns the
 * milliseconds since `since` (default: now) at which the accepted answer's first byte came.
 */
export async function pollHttp(port: number, opts: { host?: string; path?: string; ok: (a: HttpAnswer) => boolean; timeoutMs: number; intervalMs?: number; since?: number }): Promise<number> {
  const since = opts.since ?? performance.now();
  const deadline = since + opts.timeoutMs;
  let last = "no answer";
  while (performance.now() < deadline) {
    const sent = performance.now();
    try {
      const a = await httpGet(port, opts.path ?? "/", { ...(opts.host ? { host: opts.host } : {}), timeoutMs: Math.max(1000, deadline - sent) });
      if (opts.ok(a)) return sent + a.ttfbMs - since;
      last = `${a.status} ${a.body.slice(0, 80)}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await sleep(opts.intervalMs ?? 10);
  }
  throw new Error(`port ${port}${opts.host ? ` (Host ${opts.host})` : ""} did not answer as expected within ${opts.timeoutMs} ms; last: ${last}`);
}

/** Resolves when a TCP connection to 127.0.0.1:port succeeds. */
export async function waitPort(port: number, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`process ${child.pid} exited (${child.exitCode ?? child.signalCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
      s.connect(port, "127.0.0.1");
    });
    if (ok) return;
    await sleep(5);
  }
  throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Spawns a child and registers its stop (SIGTERM, then SIGKILL after `killAfterMs`) with `td`. */
export function spawnOwned(td: Teardown, name: string, cmd: string, args: string[], opts: SpawnOptions = {}, killAfterMs = 5000): ChildProcess {
  const child = spawn(cmd, args, opts);
  child.on("error", (e) => log(`${name}: ${e.message}`));
  td.add(name, () => stopChild(child, killAfterMs));
  return child;
}

export async function stopChild(child: ChildProcess, killAfterMs = 5000, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  await exited;
  clearTimeout(timer);
}

// ------------------------------------------------------------------ /proc

export interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
}

/** Every process now, with its parent (from /proc/<pid>/stat). */
export async function processes(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      // comm is in parentheses and may hold spaces or parentheses: split after the last ")".
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      const cmdline = (await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ").trim();
      out.push({ pid: Number(name), ppid: Number(fields[1]), comm, cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** `root` and all its descendants. */
export async function processTree(root: number): Promise<ProcInfo[]> {
  const all = await processes();
  const children = new Map<number, ProcInfo[]>();
  for (const p of all) (children.get(p.ppid) ?? children.set(p.ppid, []).get(p.ppid)!).push(p);
  const self = all.find((p) => p.pid === root);
  if (!self) return [];
  const out: ProcInfo[] = [];
  const queue = [self];
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(children.get(p.pid) ?? []));
  }
  return out;
}

/** Resident set size and proportional set size (shared pages split between sharers), in bytes. */
export async function memoryOf(pid: number): Promise<{ rss: number; pss: number }> {
  try {
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? 0) * 1024;
    return { rss: kb("Rss"), pss: kb("Pss") };
  } catch {
    try {
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
      return { rss, pss: rss };
    } catch {
      return { rss: 0, pss: 0 };
    }
  }
}
