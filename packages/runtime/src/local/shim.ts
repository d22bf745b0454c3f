/**
 * Instances outlive the runtime's process. Each runs under a tiny supervisor: a
 * `/bin/sh` started in its own session (so neither a Ctrl-C nor the API's exit
 * reaches it) that runs the driver's command (`runc run`, or the app itself for the
 * process fallback) with stdout and stderr appended to `<dir>/output`, waits for it,
 * and writes its exit status to `<dir>/exit`. The runtime tails `output` and watches
 * for `exit`; a runtime started later does the same from the offset its predecessor
 * recorded. A supervisor costs one dash process (~1 MB); it is the parent of what it
 * runs, so the exit status is never lost, whoever is (or is not) watching.
 *
 *   <dir>/shim.json   the supervisor's pid and start time (pids get reused)
 *   <dir>/pid         the container's (runc) or process group's (fallback) pid
 *   <dir>/output      stdout and stderr, interleaved as written
 *   <dir>/exit        the exit status, "<n>\n" (128 + signal when killed)
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { watch, type FSWatcher } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Unavailable } from "@berth/core";

/**
 * The redirections live in the subshell that execs the command, so the supervisor's own
 * notes about it ("Killed") go to its stderr, /dev/null, and not into the app's log.
 */
const SUPERVISOR = `d=$1; shift; (exec "$@" >>"$d/output" 2>&1 </dev/null); echo $? >"$d/exit"`;

/** Lines longer than this are cut, so one runaway write cannot hold memory. */
export const MAX_LINE = 16 * 1024;
/** Once read to its end and this big, `output` is truncated (see README: a write racing the truncation is lost). */
export const ROTATE_BYTES = 8 * 1024 * 1024;
/** How often a watched run is checked without a file-system event (a missed inotify event, a vanished supervisor). */
const POLL_MS = 1000;

/** A process identified across pid reuse: its pid and its start time in clock ticks since boot. */
export interface ProcId {
  pid: number;
  start: number;
}

/** Starts `argv` under a supervisor in `dir` (which must exist). Resolves once the supervisor runs. */
export async function supervise(dir: string, argv: string[], o: { cwd: string; env?: Record<string, string> }): Promise<ProcId> {
  const child = spawn("/bin/sh", ["-c", SUPERVISOR, "berth-supervisor", dir, ...argv], {
    cwd: o.cwd,
    env: o.env,
    detached: true,
    stdio: "ignore",
  });
  try {
    await once(child, "spawn");
  } catch (e) {
    throw new Unavailable(`could not start a supervisor (/bin/sh) in ${dir}: ${(e as Error).message}`);
  }
  child.unref();
  const pid = child.pid!;
  // A supervisor that already finished has no start time left to read; 0 never matches a live one.
  const id: ProcId = { pid, start: (await procStart(pid)) ?? 0 };
  await fs.writeFile(path.join(dir, "shim.json"), JSON.stringify(id));
  return id;
}

/** Field 22 of /proc/<pid>/stat; undefined when the process is gone or a zombie. */
export async function procStart(pid: number): Promise<number | undefined> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (!stat) return undefined;
  // The command name (field 2) may hold spaces and parentheses: count from the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return Number(fields[19]);
}

export async function isRunning(p: ProcId): Promise<boolean> {
  return p.start !== 0 && (await procStart(p.pid)) === p.start;
}

export async function readSupervisor(dir: string): Promise<ProcId | undefined> {
  const j = await readJson(path.join(dir, "shim.json"));
  if (!j || typeof j !== "object") return undefined;
  const { pid, start } = j as Record<string, unknown>;
  return typeof pid === "number" && typeof start === "number" ? { pid, start } : undefined;
}

/** The exit status once the supervisor has written all of it. */
export async function readExit(dir: string): Promise<number | undefined> {
  const text = await fs.readFile(path.join(dir, "exit"), "utf8").catch(() => "");
  const m = /^(\d+)\n/.exec(text);
  return m ? Number(m[1]) : undefined;
}

export async function readPid(dir: string): Promise<number | undefined> {
  const text = await fs.readFile(path.join(dir, "pid"), "utf8").catch(() => "");
  const n = Number(text.trim());
  return Number.isInteger(n) && n > 1 ? n : undefined;
}

/** How a watched run ended: its exit status, or "lost" when its supervisor vanished without writing one. */
export type RunEnd = number | "lost";

/**
 * Watches one run dir: tails `output` from `offset` into lines and resolves `ended` once
 * `exit` appears and the output is read to its end. `offset` counts only bytes handed
 * out as whole lines, so a successor that starts from it neither repeats nor drops one.
 */
export class RunWatch {
  readonly ended: Promise<RunEnd>;
  readonly #dir: string;
  readonly #file: string;
  readonly #onLine: (line: string) => void;
  readonly #supervisor: ProcId | undefined;
  #offset: number;
  #carry = Buffer.alloc(0);
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> | undefined;
  #again = false;
  #check = false;
  #done = false;
  #resolve!: (end: RunEnd) => void;

  constructor(dir: string, offset: number, onLine: (line: string) => void, supervisor: ProcId | undefined) {
    this.#dir = dir;
    this.#file = path.join(dir, "output");
    this.#onLine = onLine;
    this.#supervisor = supervisor;
    this.#offset = offset;
    this.ended = new Promise((resolve) => (this.#resolve = resolve));
    try {
      this.#watcher = watch(dir, () => this.kick());
      this.#watcher.on("error", () => undefined);
    } catch {
      // The poll below still sees everything, only later.
    }
    this.#timer = setInterval(() => this.kick(true), POLL_MS);
    this.#timer.unref();
    this.kick();
  }

  /** Bytes of `output` handed out as lines. */
  get offset(): number {
    return this.#offset;
  }

  /** Reads what is new; `checkSupervisor` also notices a supervisor that died without an exit status. */
  kick(checkSupervisor = false): void {
    if (this.#done) return;
    this.#again = true;
    this.#check ||= checkSupervisor;
    if (this.#busy) return;
    this.#busy = (async () => {
      while (this.#again && !this.#done) {
        this.#again = false;
        const check = this.#check;
        this.#check = false;
        await this.#step(check);
      }
    })()
      .catch(() => undefined)
      .finally(() => (this.#busy = undefined));
  }

  /** Stops watching; the run goes on (a later runtime adopts it from `offset`). */
  detach(): void {
    this.#done = true;
    this.#watcher?.close();
    clearInterval(this.#timer);
  }

  async #step(checkSupervisor: boolean): Promise<void> {
    // Order matters: a supervisor writes `exit` and then exits, so a dead one without `exit` is lost.
    const alive = checkSupervisor && this.#supervisor ? await isRunning(this.#supervisor) : true;
    const code = await readExit(this.#dir);
    await this.#read(code !== undefined || !alive);
    if (this.#done) return;
    if (code !== undefined) this.#finish(code);
    else if (!alive) this.#finish("lost");
  }

  #finish(end: RunEnd): void {
    this.detach();
    this.#resolve(end);
  }

  async #read(final: boolean): Promise<void> {
    const fh = await fs.open(this.#file, "r").catch(() => undefined);
    if (!fh) return;
    try {
      const size = (await fh.stat()).size;
      if (size < this.#offset + this.#carry.length) {
        // Truncated under us (only we rotate it; a successor may have): start over.
        this.#offset = 0;
        this.#carry = Buffer.alloc(0);
      }
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        if (this.#done) return;
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.#offset + this.#carry.length);
        if (bytesRead === 0) break;
        this.#carry = Buffer.concat([this.#carry, buf.subarray(0, bytesRead)]);
        this.#lines(false);
      }
      if (final) this.#lines(true);
      if (this.#carry.length === 0 && this.#offset >= ROTATE_BYTES && (await fh.stat()).size === this.#offset) {
        await fs.truncate(this.#file, 0);
        this.#offset = 0;
      }
    } finally {
      await fh.close();
    }
  }

  /** Hands out complete lines from the carry; `flush` also the unterminated rest. */
  #lines(flush: boolean): void {
    for (;;) {
      const nl = this.#carry.indexOf(0x0a);
      let cut: number;
      let skip: number;
      if (nl >= 0 && nl <= MAX_LINE) {
        cut = nl;
        skip = 1;
      } else if (this.#carry.length > MAX_LINE) {
        cut = utf8Boundary(this.#carry, MAX_LINE);
        skip = 0;
      } else if (flush && this.#carry.length > 0) {
        cut = this.#carry.length;
        skip = 0;
      } else {
        return;
      }
      let line = this.#carry.subarray(0, cut).toString("utf8");
      if (line.endsWith("\r")) line = line.slice(0, -1);
      this.#carry = this.#carry.subarray(cut + skip);
      this.#offset += cut + skip;
      this.#onLine(line);
    }
  }
}

/** The largest cut ≤ max that does not split a UTF-8 sequence. */
function utf8Boundary(buf: Buffer, max: number): number {
  let cut = max;
  while (cut > max - 4 && cut > 0 && (buf[cut]! & 0xc0) === 0x80) cut--;
  return cut;
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as unknown;
  } catch {
    return undefined;
  }
}

/** Run ids name directories and containers: nothing a record could turn into a path elsewhere. */
export function validRunId(id: unknown): id is string {
  return typeof id === "string" && /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/.test(id);
}
