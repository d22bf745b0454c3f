/**
 * The fallback when runc is unavailable: each instance is a plain process group
 * (`/bin/sh -c`) under a supervisor (shim.ts), with the same env, PORT and output
 * capture, but no isolation: it runs as this process's user, sees the host's
 * filesystem and processes, and has no memory or pids limit (so no OOM report).
 * Freezing uses SIGSTOP/SIGCONT on the process group.
 *
 * The supervisor runs `setsid` (util-linux), which makes the app a session and
 * process group of its own while staying the supervisor's child: signals reach every
 * process of the app and never the supervisor, which records the exit status. The
 * group's leader writes its pid (= the group id) to `<dir>/pid` before it execs the
 * command. A group is signalled only while its supervisor is alive: the supervisor
 * has not reaped the leader yet, so the id cannot belong to anyone else.
 */
import { constants } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Unavailable } from "@berth/core";
import type { Driver, Exit, LaunchSpec, Launched, OutputSink } from "./driver.ts";
import { isRunning, readExit, readPid, readSupervisor, RunWatch, supervise, validRunId, type ProcId } from "./shim.ts";

const START_TIMEOUT_MS = 30_000;
/**
 * Writes the group id, then becomes the app's shell. $0 is the run dir, $1 the command.
 * That shell catches TERM (a no-op trap, reset to the default in what it runs) and so
 * outlives a stop's SIGTERM until the command's processes have exited, like dash as PID 1
 * under runc: otherwise it died at once with 143, and the group (the app still shutting
 * down) was SIGKILLed with it, without its grace period.
 */
const LEADER = `echo $$ >"$0/pid" && exec /bin/sh -c "trap : TERM
$1"`;

export async function createProcessDriver(o: { dir: string; nodeBinary?: string }): Promise<Driver> {
  const runs = path.join(o.dir, "runs");
  await fs.mkdir(runs, { recursive: true, mode: 0o700 });
  const setsid = await findSetsid();
  const nodeBin = o.nodeBinary ? path.dirname(o.nodeBinary) : undefined;

  const group = (pgid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      // ESRCH: the group is gone already.
    }
  };

  const attach = (id: string, dir: string, supervisor: ProcId | undefined, pgid: number, offset: number, out: OutputSink): Launched => {
    const watch = new RunWatch(dir, offset, out, supervisor);
    let ended = false;
    const live = async () => !ended && supervisor !== undefined && (await isRunning(supervisor));
    const exited = watch.ended.then(async (end): Promise<Exit> => {
      // Whatever the shell left behind in its group goes with it; the group cannot be reused
      // while one of its processes lives.
      if (end !== "lost") group(pgid, "SIGKILL");
      ended = true;
      await fs.rm(dir, { recursive: true, force: true });
      return end === "lost" ? { code: 255, oom: false, lost: true } : { code: end, oom: false };
    });
    return {
      id,
      exited,
      async signal(sig) {
        if (!(await live())) return;
        group(pgid, "SIGCONT");
        group(pgid, sig);
      },
      async pause() {
        if (await live()) group(pgid, "SIGSTOP");
      },
      async resume() {
        if (await live()) group(pgid, "SIGCONT");
      },
      logOffset: () => watch.offset,
      detach: () => watch.detach(),
    };
  };

  /** Kills the run's group (when its supervisor still lives) and waits for the supervisor's record of it. */
  const kill = async (dir: string) => {
    const supervisor = await readSupervisor(dir);
    const pgid = await readPid(dir);
    if (!supervisor || !pgid || !(await isRunning(supervisor))) return;
    group(pgid, "SIGCONT");
    group(pgid, "SIGKILL");
    const deadline = Date.now() + 5000;
    while ((await readExit(dir)) === undefined && (await isRunning(supervisor)) && Date.now() < deadline) await sleep(10);
    group(pgid, "SIGKILL");
  };

  return {
    kind: "process",
    isolated: false,
    paths: (image) => ({ app: image.appDir, layers: image.layersDir, nodeBin }),

    async launch(spec: LaunchSpec, out: OutputSink): Promise<Launched> {
      if (!validRunId(spec.id)) throw new Unavailable(`invalid run id ${JSON.stringify(spec.id)}`);
      const dir = path.join(runs, spec.id);
      await fs.mkdir(dir, { mode: 0o700 });
      let supervisor: ProcId;
      try {
        supervisor = await supervise(dir, [setsid, "-w", "/bin/sh", "-c", LEADER, dir, spec.command], { cwd: spec.image.appDir, env: spec.env });
      } catch (e) {
        await fs.rm(dir, { recursive: true, force: true });
        throw e;
      }
      const deadline = Date.now() + START_TIMEOUT_MS;
      let pgid: number | undefined;
      while ((pgid = await readPid(dir)) === undefined && (await readExit(dir)) === undefined && Date.now() < deadline) await sleep(2);
      if (pgid === undefined) {
        const said = (await fs.readFile(path.join(dir, "output"), "utf8").catch(() => "")).trim();
        await kill(dir);
        await fs.rm(dir, { recursive: true, force: true });
        throw new Unavailable(`could not start ${spec.id}: ${said || "its shell exited before it ran"}`);
      }
      return attach(spec.id, dir, supervisor, pgid, 0, out);
    },

    async adopt(id: string, offset: number, out: OutputSink) {
      if (!validRunId(id)) return undefined;
      const dir = path.join(runs, id);
      const pgid = await readPid(dir);
      if (pgid === undefined) return undefined;
      const supervisor = await readSupervisor(dir);
      const paused = supervisor !== undefined && (await isRunning(supervisor)) && (await stopped(pgid));
      return { run: attach(id, dir, supervisor, pgid, offset, out), paused };
    },

    async reap(keep: ReadonlySet<string>) {
      const gone = (await fs.readdir(runs)).filter((id) => !keep.has(id));
      await Promise.all(
        gone.map(async (id) => {
          await kill(path.join(runs, id));
          await fs.rm(path.join(runs, id), { recursive: true, force: true });
        }),
      );
    },
  };
}

/** Whether the group's leader is stopped (SIGSTOP): a frozen instance a predecessor left. */
async function stopped(pid: number): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
}

/** `setsid` starts the app in a session and process group of its own, as the supervisor's child. */
async function findSetsid(): Promise<string> {
  for (const p of ["/usr/bin/setsid", "/bin/setsid", "/usr/sbin/setsid"]) {
    if (await fs.access(p, constants.X_OK).then(() => true, () => false)) return p;
  }
  throw new Unavailable("setsid (util-linux) is missing: the process fallback needs it to run instances");
}
