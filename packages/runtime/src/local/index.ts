/**
 * The local runtime, the embedded default: every instance runs on this machine as
 * a runc container (runc.ts), or as a plain process group when runc is missing or
 * fails its self-test (process.ts), each under a supervisor that outlives this
 * process (shim.ts). See packages/runtime/README.md for what each isolates and the
 * measured figures.
 *
 * Bookkeeping lives here: releases, start-first apply, readiness, crash restarts
 * with exponential backoff, scale, freeze, one-off runs, logs and events. Each app's
 * bookkeeping is also written to `<stateDir>/apps/<hash>.json` whenever it changes,
 * so that a runtime created later on the same state dir (the API restarted) adopts
 * the instances instead of killing them: apps keep serving while the control plane
 * restarts.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Conflict, Invalid, NotFound, isBerthError, type Clock, type Logger, type TimerHandle } from "@berth/core";
import {
  BootFailed,
  DYNO_SIZES,
  type DesiredApp,
  type DynoSize,
  type Instance,
  type InstanceState,
  type ProcessSpec,
  type Runtime,
  type RuntimeEvent,
} from "../port.ts";
import type { Driver, Exit, Launched } from "./driver.ts";
import { DYNO_UID, ImageCache, type PreparedImage, type PruneResult } from "./image.ts";
import { PortAllocator, type PortRange } from "./ports.ts";
import { describeExit, seconds, waitReady, type Readiness } from "./probe.ts";
import { createProcessDriver } from "./process.ts";
import { createRuncDriver } from "./runc.ts";
import { validRunId } from "./shim.ts";

export interface LocalRuntimeOptions {
  /** Owned by this runtime alone: runc state, bundles, run dirs, unpacked images, app records. */
  stateDir: string;
  /** Drives crash-restart backoff. Readiness polls and grace periods watch real processes and use real time. */
  clock: Clock;
  logger: Logger;
  /** A Node binary for apps that bring none: bound at /opt/berth/node/bin/node (or that dir on PATH without runc). */
  nodeBinary?: string;
  /** false forces the plain-process fallback. Default true. */
  preferRunc?: boolean;
  /** Host ports handed to instances as PORT. Default 20000–29999. */
  portRange?: PortRange;
  /** The runc binary. Default "runc" from PATH. */
  runcPath?: string;
  /** How long a non-web process must stay up to count as started. Default 500 ms. */
  settleMs?: number;
  /** Images no instance uses that the cache keeps anyway (most recently used first), for quick rollbacks. Default 3. */
  keepUnusedImages?: number;
  /** Called once per image layer actually unpacked (tests). */
  onLayerUnpacked?: (digest: string) => void;
}

export interface LocalRuntime extends Runtime {
  /** "runc", or "process" when running without isolation. */
  readonly isolation: "runc" | "process";
  /** Kills every instance and one-off run now (SIGKILL), deletes leftover containers and every app record. For tests. */
  stopAll(): Promise<void>;
  /** Deletes cached images that no instance uses (beyond `keepUnusedImages`) and the layers only they used. Runs after every apply and remove. */
  pruneImages(): Promise<PruneResult>;
}

/** First crash-restart delay; doubles per consecutive crash up to MAX_BACKOFF_MS. */
export const FIRST_BACKOFF_MS = 1000;
export const MAX_BACKOFF_MS = 5 * 60_000;
/** An instance up this long without crashing starts its backoff from the beginning again. */
const BACKOFF_RESET_MS = 10 * 60_000;
/** One-off output kept for the caller (the log stream gets everything). */
const MAX_ONE_OFF_OUTPUT = 1024 * 1024;
/** Events kept for the first subscriber. */
const MAX_BACKLOG = 10_000;
/** How often log offsets are written to the app records (a successor repeats at most this much output). */
const OFFSET_SAVE_MS = 1000;

/**
 * Creates the runtime and adopts the instances that a previous runtime on the same state
 * dir left running (see the file comment); containers and processes without a valid
 * record are killed.
 */
export async function createLocalRuntime(opts: LocalRuntimeOptions): Promise<LocalRuntime> {
  const stateDir = path.resolve(opts.stateDir);
  await fs.mkdir(stateDir, { recursive: true, mode: 0o755 });
  await fs.chmod(stateDir, 0o755);
  await lockStateDir(stateDir);
  const nodeBinary = opts.nodeBinary ? await fs.realpath(opts.nodeBinary) : undefined;

  let driver: Driver | undefined;
  if (opts.preferRunc !== false) {
    try {
      driver = await createRuncDriver({ dir: path.join(stateDir, "runc"), runc: opts.runcPath, nodeBinary, logger: opts.logger });
    } catch (e) {
      opts.logger.warn("runc unavailable: instances run as plain processes, without isolation", { err: (e as Error).message });
    }
    // Instances a process-fallback runtime left here are not adopted by a runc one (they would
    // keep their ports and lack isolation): they go, and their records' instances start again
    // as containers.
    if (driver && (await fs.readdir(path.join(stateDir, "process", "runs")).catch(() => [])).length > 0) {
      await (await createProcessDriver({ dir: path.join(stateDir, "process") })).reap(new Set());
    }
  } else {
    opts.logger.warn("runc not wanted (preferRunc false): instances run as plain processes, without isolation");
  }
  driver ??= await createProcessDriver({ dir: path.join(stateDir, "process"), nodeBinary });
  const local = new Local(opts, stateDir, driver);
  await local.adopt();
  return local;
}

/** One pid file per state dir: two runtimes would reap each other's containers. */
async function lockStateDir(dir: string): Promise<void> {
  const file = path.join(dir, "owner.pid");
  const other = Number(await fs.readFile(file, "utf8").catch(() => "0"));
  if (other && other !== process.pid && alive(other)) {
    throw new Conflict(`state dir ${dir} is in use by process ${other}`);
  }
  await fs.writeFile(file, String(process.pid));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** One apply(): instances of the current deployment are `app.current`'s, the rest are on their way out. */
interface Deployment {
  /** Names the deployment in the app record. */
  id: string;
  desired: DesiredApp;
  image: PreparedImage;
}

interface Inst {
  app: AppState;
  dep: Deployment;
  spec: ProcessSpec;
  name: string;
  index: number;
  state: InstanceState;
  startedAt: Date;
  /** Automatic restarts after crashes. */
  restarts: number;
  lastExit?: string;
  port?: number;
  run?: Launched;
  /** Consecutive crashes, for the backoff. */
  crashes: number;
  upSince?: number;
  timer?: TimerHandle;
  booting?: Promise<Readiness>;
  stopping?: Promise<void>;
}

interface AppState {
  appId: string;
  current?: Deployment;
  instances: Set<Inst>;
  oneOffs: Set<Launched>;
  /** Serialises apply/scale/restart/freeze/remove of one app. */
  queue: Promise<unknown>;
  removed: boolean;
  /** freeze() was the last word: instances of the current release that become ready are frozen too. */
  frozen: boolean;
  /** The app's record file, and its writer (writes are coalesced, never concurrent). */
  file: string;
  saving?: Promise<void>;
  dirty: boolean;
  /** Log offsets as last written, so the periodic save skips apps with nothing new. */
  savedOffsets: string;
}

/** What `<stateDir>/apps/<hash>.json` holds: enough to adopt, restart and scale every instance. */
interface AppRecord {
  v: 1;
  appId: string;
  current?: string;
  frozen: boolean;
  deployments: Record<string, { desired: DesiredApp; image: PreparedImage }>;
  instances: InstRecord[];
}

interface InstRecord {
  deployment: string;
  type: string;
  index: number;
  state: InstanceState;
  startedAt: number;
  restarts: number;
  crashes: number;
  upSince?: number;
  lastExit?: string;
  port?: number;
  run?: { id: string; logOffset: number };
}

class Local implements LocalRuntime {
  readonly name = "local";
  readonly canFreeze = true;
  readonly isolation: "runc" | "process";
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #driver: Driver;
  readonly #ports: PortAllocator;
  readonly #images: ImageCache;
  readonly #stateDir: string;
  readonly #recordsDir: string;
  readonly #settleMs: number;
  readonly #keepUnusedImages: number;
  readonly #apps = new Map<string, AppState>();
  readonly #listeners = new Set<(e: RuntimeEvent) => void>();
  /** Images an apply() or runOnce() in flight is preparing or starting: prune keeps them. */
  readonly #pinned = new Map<string, number>();
  readonly #offsetTimer: NodeJS.Timeout;
  /**
   * Events until the first subscribe(): adopted instances log what they wrote while no
   * runtime watched as soon as they are adopted, before the caller can subscribe.
   */
  #backlog: RuntimeEvent[] | undefined = [];
  #oneOffSeq = 0;
  #closed = false;

  constructor(opts: LocalRuntimeOptions, stateDir: string, driver: Driver) {
    this.#clock = opts.clock;
    this.#log = opts.logger.child({ runtime: "local", isolation: driver.kind });
    this.#driver = driver;
    this.isolation = driver.kind;
    this.#ports = new PortAllocator(opts.portRange ?? { from: 20000, to: 29999 });
    this.#images = new ImageCache(path.join(stateDir, "images"), { onLayerUnpacked: opts.onLayerUnpacked });
    this.#stateDir = stateDir;
    this.#recordsDir = path.join(stateDir, "apps");
    this.#settleMs = opts.settleMs ?? 500;
    this.#keepUnusedImages = opts.keepUnusedImages ?? 3;
    this.#offsetTimer = setInterval(() => {
      for (const app of this.#apps.values()) if (offsetsOf(app) !== app.savedOffsets) this.#save(app);
    }, OFFSET_SAVE_MS);
    this.#offsetTimer.unref();
  }

  // ---- Runtime --------------------------------------------------------------

  async apply(desired: DesiredApp): Promise<void> {
    validate(desired);
    const unpin = this.#pin(desired.image);
    try {
      await this.#serial(desired.appId, true, async (app) => {
        const image = await this.#images.prepare(desired.image);
        await this.#checkReadable(image);
        const dep: Deployment = { id: randomBytes(6).toString("hex"), desired, image };
        const fresh: Inst[] = [];
        for (const spec of desired.processes) {
          for (let i = 1; i <= spec.quantity; i++) fresh.push(this.#newInst(app, dep, spec, i));
        }
        let failure: Readiness | undefined;
        let platformError: unknown;
        await Promise.all(
          fresh.map(async (inst) => {
            let r: Readiness;
            try {
              r = await this.#start(inst);
            } catch (e) {
              platformError ??= e;
              r = { ok: false, reason: (e as Error).message, lastExit: "failed to start" };
            }
            if (!r.ok && !failure) {
              failure = r;
              // One failure fails the release: stop waiting for the others.
              for (const other of fresh) void this.#stop(other, 0);
            }
          }),
        );
        if (failure && !failure.ok) {
          await Promise.all(fresh.map((i) => this.#stop(i, 0)));
          if (platformError) throw platformError;
          this.#log.info("release failed to boot", { appId: app.appId, release: desired.release, reason: failure.reason });
          throw new BootFailed(failure.reason);
        }
        const old = [...app.instances].filter((i) => i.dep !== dep);
        app.current = dep;
        // A deploy runs the new release; the autoscaler freezes it again when idle.
        app.frozen = false;
        // Durable before the old release goes: a runtime that crashes from here on is
        // succeeded by one that knows the new release is the current one.
        await this.#persist(app);
        await Promise.all(old.map((i) => this.#stop(i, i.dep.desired.graceMs)));
        await this.#persist(app);
      });
    } finally {
      unpin();
      this.#schedulePrune();
    }
  }

  async scale(appId: string, type: string, quantity: number): Promise<void> {
    if (!Number.isInteger(quantity) || quantity < 0) throw new Invalid(`quantity ${quantity} must be a whole number ≥ 0`);
    await this.#serial(appId, false, async (app) => {
      const dep = app.current;
      const spec = dep?.desired.processes.find((p) => p.type === type);
      if (!dep || !spec) throw new NotFound(`process type ${type}`);
      const updated: ProcessSpec = { ...spec, quantity };
      dep.desired = { ...dep.desired, processes: dep.desired.processes.map((p) => (p === spec ? updated : p)) };
      this.#save(app);
      const live = this.#live(app).filter((i) => i.spec.type === type).sort((a, b) => a.index - b.index);
      for (const inst of live) inst.spec = updated;
      if (live.length > quantity) {
        await Promise.all(live.slice(quantity).map((i) => this.#stop(i, dep.desired.graceMs)));
      } else {
        const taken = new Set(live.map((i) => i.index));
        const fresh: Inst[] = [];
        for (let index = 1; fresh.length + live.length < quantity; index++) {
          if (!taken.has(index)) fresh.push(this.#newInst(app, dep, updated, index));
        }
        await Promise.all(fresh.map((i) => this.#startOrCrash(i)));
      }
      await this.#persist(app);
    });
  }

  async list(appId?: string): Promise<Instance[]> {
    const apps = appId === undefined ? [...this.#apps.values()] : [this.#apps.get(appId)].filter((a) => a !== undefined);
    return apps
      .flatMap((a) => [...a.instances].map((i) => this.#view(i)))
      .sort((a, b) => a.appId.localeCompare(b.appId) || a.release - b.release || a.name.localeCompare(b.name, "en", { numeric: true }));
  }

  async restart(appId: string, which?: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      const targets = this.#live(app).filter((i) => which === undefined || i.name === which || i.spec.type === which);
      if (which !== undefined && targets.length === 0) throw new NotFound(`dyno ${which}`);
      await Promise.all(
        targets.map(async (old) => {
          await this.#stop(old, old.dep.desired.graceMs);
          if (app.removed || app.current !== old.dep) return;
          const inst = this.#newInst(app, old.dep, old.spec, old.index);
          inst.restarts = old.restarts;
          await this.#startOrCrash(inst);
        }),
      );
    });
  }

  /**
   * Output is stdout and stderr interleaved as written (first 1 MiB). A timeout kills the
   * run and answers exit code 124 with a last line `berth: timed out after <n>s, killed`.
   */
  async runOnce(desired: DesiredApp, command: string, opts: { timeoutMs: number }): Promise<{ exitCode: number; output: string }> {
    const unpin = this.#pin(desired.image);
    const app = this.#app(desired.appId);
    const dyno = `run.${++this.#oneOffSeq}`;
    const size = desired.processes.find((p) => p.type === "release")?.size ?? desired.processes[0]?.size ?? DYNO_SIZES["standard-1x"]!;
    let port: number | undefined;
    let output = "";
    let truncated = false;
    const keep = (line: string) => {
      if (output.length + line.length + 1 > MAX_ONE_OFF_OUTPUT) truncated = true;
      else output += line + "\n";
    };
    try {
      const image = await this.#images.prepare(desired.image);
      await this.#checkReadable(image);
      port = await this.#ports.allocate();
      const run = await this.#driver.launch(
        { id: containerId(desired.appId, dyno), dyno, command, env: this.#env(desired, image, dyno, port), image, size },
        (text) => {
          keep(text);
          this.#emitLog(desired.appId, "app", dyno, text);
        },
      );
      app.oneOffs.add(run);
      this.#emitLog(desired.appId, "berth", dyno, `Starting process with command \`${command}\``);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        void run.signal("SIGKILL");
      }, opts.timeoutMs);
      const exit = await run.exited.finally(() => {
        clearTimeout(timer);
        app.oneOffs.delete(run);
      });
      if (truncated) output += "berth: output truncated\n";
      if (timedOut) {
        const line = `timed out after ${seconds(opts.timeoutMs)}, killed`;
        output += `berth: ${line}\n`;
        this.#emitLog(desired.appId, "berth", dyno, `Process ${line}`);
        return { exitCode: 124, output };
      }
      if (exit.oom) output += "berth: killed: out of memory\n";
      this.#emitLog(desired.appId, "berth", dyno, `Process exited with status ${exit.code}`);
      return { exitCode: exit.code, output };
    } finally {
      if (port !== undefined) this.#ports.release(port);
      unpin();
    }
  }

  /**
   * Freezes the current release's instances (cgroup freezer; SIGSTOP without runc); ones still
   * starting are frozen once ready. Connections queue in the kernel meanwhile.
   */
  async freeze(appId: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      app.frozen = true;
      this.#save(app);
      await Promise.all(
        this.#live(app).map(async (inst) => {
          // #ready freezes it, since app.frozen is set.
          if (inst.booting) await inst.booting.catch(() => undefined);
          else if (inst.state === "up" && inst.run) await this.#freezeInst(inst, inst.run);
        }),
      );
      await this.#persist(app);
    });
  }

  async thaw(appId: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      app.frozen = false;
      this.#save(app);
      await Promise.all(
        this.#live(app)
          .filter((i) => i.state === "frozen" && i.run)
          .map(async (inst) => {
            await inst.run!.resume();
            this.#setState(inst, "up");
          }),
      );
      // A thaw is the hot path of a wake from frozen: the record is written soon, not
      // waited for (it cost 5-30 ms behind other file work). Should this process die
      // before it lands, a successor adopts the instances with runc's own word on whether
      // they are paused; only its "frozen" flag for instances started later would be stale.
      this.#save(app);
    });
  }

  async remove(appId: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      app.removed = true;
      for (const run of app.oneOffs) void run.signal("SIGKILL");
      await Promise.all([...app.instances].map((i) => this.#stop(i, i.dep.desired.graceMs)));
      await Promise.all([...app.oneOffs].map((r) => r.exited));
      this.#apps.delete(appId);
      await this.#persist(app);
    });
    this.#schedulePrune();
  }

  /** The first listener also gets what happened before it subscribed (adopted instances' output, bounded). */
  subscribe(listener: (e: RuntimeEvent) => void): () => void {
    this.#listeners.add(listener);
    const backlog = this.#backlog;
    this.#backlog = undefined;
    for (const e of backlog ?? []) this.#emit(e);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Stops restart timers, watching and events, and writes every app record: instances keep
   * running for the next runtime on this state dir to adopt. One-off runs are killed: the
   * caller waiting for their result is going away.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const oneOffs = [...this.#apps.values()].flatMap((a) => [...a.oneOffs]);
    await Promise.all(
      oneOffs.map(async (r) => {
        await r.signal("SIGKILL");
        await r.exited;
      }),
    );
    this.#closed = true;
    clearInterval(this.#offsetTimer);
    for (const app of this.#apps.values()) {
      for (const inst of app.instances) {
        this.#clearTimer(inst);
        inst.run?.detach();
      }
    }
    await Promise.all([...this.#apps.values()].map((app) => this.#flush(app)));
    this.#listeners.clear();
    await fs.rm(path.join(this.#stateDir, "owner.pid"), { force: true });
  }

  async stopAll(): Promise<void> {
    const apps = [...this.#apps.values()];
    for (const app of apps) app.removed = true;
    if (!this.#closed) {
      await Promise.all(
        apps.flatMap((app) => [
          ...[...app.instances].map((i) => this.#stop(i, 0)),
          ...[...app.oneOffs].map(async (r) => {
            await r.signal("SIGKILL");
            await r.exited;
          }),
        ]),
      );
    }
    this.#apps.clear();
    await this.#driver.reap(new Set());
    await Promise.all(apps.map((a) => a.saving));
    await fs.rm(this.#recordsDir, { recursive: true, force: true });
    await fs.mkdir(this.#recordsDir, { recursive: true, mode: 0o700 });
  }

  pruneImages(): Promise<PruneResult> {
    const keep = new Set(this.#pinned.keys());
    for (const app of this.#apps.values()) {
      if (app.current?.image.digest) keep.add(app.current.image.digest);
      for (const inst of app.instances) if (inst.dep.image.digest) keep.add(inst.dep.image.digest);
    }
    return this.#images.prune({ keep, keepUnused: this.#keepUnusedImages });
  }

  // ---- adoption -------------------------------------------------------------

  /**
   * Reads the app records a previous runtime left, kills every run they do not name, and
   * takes over the rest: running instances of the current release as they are (up, or
   * frozen), starting ones through their readiness check, crashed ones through their
   * backoff, and those of older releases (an apply cut short) are stopped.
   */
  async adopt(): Promise<void> {
    await fs.mkdir(this.#recordsDir, { recursive: true, mode: 0o700 });
    const loaded: Array<{ inst: Inst; run?: InstRecord["run"]; port?: number }> = [];
    const keep = new Set<string>();
    for (const name of await fs.readdir(this.#recordsDir)) {
      const file = path.join(this.#recordsDir, name);
      const record = parseRecord(await fs.readFile(file, "utf8").catch(() => ""));
      if (!record || recordFile(this.#recordsDir, record.appId) !== file) {
        if (name.endsWith(".json")) this.#log.warn("ignoring an invalid app record; its instances are stopped", { file });
        await fs.rm(file, { force: true });
        continue;
      }
      const app = this.#app(record.appId);
      app.frozen = record.frozen;
      const deps = new Map(Object.entries(record.deployments).map(([id, d]): [string, Deployment] => [id, { id, desired: d.desired, image: d.image }]));
      app.current = record.current === undefined ? undefined : deps.get(record.current);
      for (const r of record.instances) {
        const dep = deps.get(r.deployment);
        const spec = dep?.desired.processes.find((p) => p.type === r.type);
        if (!dep || !spec) continue;
        const inst: Inst = {
          app,
          dep,
          spec,
          name: `${spec.type}.${r.index}`,
          index: r.index,
          state: r.state,
          startedAt: new Date(r.startedAt),
          restarts: r.restarts,
          crashes: r.crashes,
        };
        if (r.upSince !== undefined) inst.upSince = r.upSince;
        if (r.lastExit !== undefined) inst.lastExit = r.lastExit;
        app.instances.add(inst);
        if (r.run) keep.add(r.run.id);
        loaded.push({ inst, run: r.run, port: r.port });
      }
    }
    await this.#driver.reap(keep);
    await Promise.all(loaded.map((l) => this.#adoptInst(l.inst, l.run, l.port)));
    for (const app of this.#apps.values()) this.#save(app);
    if (loaded.length > 0) this.#log.info("adopted instances of a previous runtime", { instances: loaded.length, apps: this.#apps.size });
    this.#schedulePrune();
  }

  async #adoptInst(inst: Inst, ref: InstRecord["run"], port: number | undefined): Promise<void> {
    const app = inst.app;
    const current = inst.dep === app.current;
    const adopted = ref
      ? await this.#driver.adopt(ref.id, ref.logOffset, (text) => this.#emitLog(app.appId, "app", inst.name, text)).catch((e: unknown) => {
          this.#log.warn("could not adopt an instance", { appId: app.appId, dyno: inst.name, err: e });
          return undefined;
        })
      : undefined;
    if (adopted) {
      const run = adopted.run;
      inst.run = run;
      if (port !== undefined) {
        this.#ports.reserve(port);
        inst.port = port;
      }
      void run.exited.then((exit) => this.#onExit(inst, run, exit));
      if (!current || inst.state === "stopping") {
        void this.#stop(inst, inst.dep.desired.graceMs);
      } else if (inst.state === "starting") {
        const booting = this.#ready(inst, run).finally(() => {
          if (inst.booting === booting) inst.booting = undefined;
        });
        inst.booting = booting;
        void booting.then((r) => this.#afterFailedStart(inst, r));
      } else {
        inst.state = adopted.paused ? "frozen" : "up";
      }
      return;
    }
    if (!current || inst.state === "stopping") {
      app.instances.delete(inst);
      return;
    }
    if (ref) {
      // It was running, and nothing of it is left (the machine rebooted, say): a crash.
      inst.lastExit = "exit status lost";
      this.#crashed(inst);
    } else {
      // Crashed before, waiting for its restart: the backoff goes on from here.
      inst.state = "crashed";
      this.#scheduleRestart(inst);
    }
  }

  // ---- instances ------------------------------------------------------------

  #newInst(app: AppState, dep: Deployment, spec: ProcessSpec, index: number): Inst {
    const inst: Inst = {
      app,
      dep,
      spec,
      name: `${spec.type}.${index}`,
      index,
      state: "starting",
      startedAt: new Date(this.#clock.now()),
      restarts: 0,
      crashes: 0,
    };
    app.instances.add(inst);
    return inst;
  }

  /** Launches the instance and waits until it is ready or has failed. Throws only for platform faults. */
  #start(inst: Inst): Promise<Readiness> {
    const booting = this.#boot(inst).finally(() => {
      if (inst.booting === booting) inst.booting = undefined;
    });
    inst.booting = booting;
    return booting;
  }

  async #boot(inst: Inst): Promise<Readiness> {
    const { desired, image } = inst.dep;
    inst.startedAt = new Date(this.#clock.now());
    this.#setState(inst, "starting");
    const port = await this.#ports.allocate();
    inst.port = port;
    this.#emitLog(inst.app.appId, "berth", inst.name, `Starting process with command \`${inst.spec.command}\``);
    let run: Launched;
    try {
      run = await this.#driver.launch(
        {
          id: containerId(inst.app.appId, inst.name),
          dyno: inst.name,
          command: inst.spec.command,
          env: this.#env(desired, image, inst.name, port),
          image,
          size: inst.spec.size,
        },
        (text) => this.#emitLog(inst.app.appId, "app", inst.name, text),
      );
    } catch (e) {
      this.#ports.release(port);
      inst.port = undefined;
      throw e;
    }
    inst.run = run;
    this.#save(inst.app);
    void run.exited.then((exit) => this.#onExit(inst, run, exit));
    return this.#ready(inst, run);
  }

  /** Waits for a launched (or adopted) instance to be ready; then it is up, or frozen when its app is. */
  async #ready(inst: Inst, run: Launched): Promise<Readiness> {
    const { desired } = inst.dep;
    const ready = await waitReady({
      port: inst.spec.type === "web" ? inst.port : undefined,
      healthCheckPath: desired.healthCheckPath,
      timeoutMs: desired.bootTimeoutMs,
      settleMs: Math.min(this.#settleMs, desired.bootTimeoutMs),
      exited: run.exited,
      cancelled: () => inst.stopping !== undefined,
    });
    if (ready.ok && inst.stopping === undefined && inst.run === run) {
      inst.upSince = this.#clock.now();
      // apply() makes a release current only once it is ready, so its own instances never freeze here.
      if (inst.app.frozen && inst.app.current === inst.dep) {
        await this.#freezeInst(inst, run).catch((e: unknown) => this.#log.warn("could not freeze a started instance", { appId: inst.app.appId, dyno: inst.name, err: e }));
      } else {
        this.#setState(inst, "up");
      }
    } else if (!ready.ok) {
      inst.lastExit = ready.lastExit;
    }
    return ready;
  }

  async #freezeInst(inst: Inst, run: Launched): Promise<void> {
    try {
      await run.pause();
    } catch (e) {
      if (inst.run === run) this.#setState(inst, "up");
      throw e;
    }
    this.#setState(inst, "frozen");
    // thaw() may have run while we paused: it did not see this instance frozen yet.
    if (!inst.app.frozen && inst.run === run) {
      await run.resume();
      this.#setState(inst, "up");
    }
  }

  /** Start outside apply(): a failure is a crash (backoff), not an error. */
  async #startOrCrash(inst: Inst): Promise<void> {
    let r: Readiness;
    try {
      r = await this.#start(inst);
    } catch (e) {
      if (!isBerthError(e)) throw e;
      this.#log.error("instance failed to start", { appId: inst.app.appId, dyno: inst.name, err: e.message });
      r = { ok: false, reason: e.message, lastExit: "failed to start" };
    }
    await this.#afterFailedStart(inst, r);
  }

  async #afterFailedStart(inst: Inst, r: Readiness): Promise<void> {
    if (r.ok || inst.stopping) return;
    const run = inst.run;
    if (run) {
      await run.signal("SIGKILL");
      await run.exited;
    }
    if (inst.stopping) return;
    inst.lastExit = r.lastExit;
    this.#crashed(inst);
  }

  #onExit(inst: Inst, run: Launched, exit: Exit): void {
    if (inst.run !== run) return;
    inst.run = undefined;
    if (inst.port !== undefined) this.#ports.release(inst.port);
    inst.port = undefined;
    const { lastExit } = describeExit(exit);
    inst.lastExit = lastExit;
    this.#save(inst.app);
    this.#emitLog(
      inst.app.appId,
      "berth",
      inst.name,
      exit.oom ? "Process killed: out of memory" : exit.lost ? "Process gone; its exit status was lost" : `Process exited with status ${exit.code}`,
    );
    // Exits while starting are the boot's to judge; exits while stopping are expected.
    if (inst.stopping || inst.state === "starting") return;
    this.#crashed(inst);
  }

  #crashed(inst: Inst): void {
    if (inst.upSince !== undefined && this.#clock.now() - inst.upSince >= BACKOFF_RESET_MS) inst.crashes = 0;
    inst.upSince = undefined;
    inst.crashes++;
    this.#setState(inst, "crashed");
    this.#scheduleRestart(inst);
  }

  #scheduleRestart(inst: Inst): void {
    const delay = Math.min(FIRST_BACKOFF_MS * 2 ** (Math.max(inst.crashes, 1) - 1), MAX_BACKOFF_MS);
    this.#emitLog(inst.app.appId, "berth", inst.name, `Restarting in ${seconds(delay)} (${inst.lastExit ?? "exited"})`);
    if (this.#closed) return;
    inst.timer = this.#clock.setTimeout(() => {
      inst.timer = undefined;
      if (inst.stopping || inst.app.removed || this.#closed) return;
      inst.restarts++;
      void this.#startOrCrash(inst).catch((e: unknown) => this.#log.error("restart failed", { appId: inst.app.appId, dyno: inst.name, err: e }));
    }, delay);
  }

  /** SIGTERM, up to graceMs, SIGKILL; resolves once the instance is gone from list(). Idempotent. */
  #stop(inst: Inst, graceMs: number): Promise<void> {
    inst.stopping ??= (async () => {
      this.#clearTimer(inst);
      // A boot in flight notices `stopping` at its next poll.
      if (inst.booting) await inst.booting.catch(() => undefined);
      const run = inst.run;
      if (run) {
        this.#setState(inst, "stopping");
        // Heroku's wording, so that logs read the same on both: users grep for R12.
        this.#emitLog(inst.app.appId, "berth", inst.name, `Stopping all processes with ${graceMs > 0 ? "SIGTERM" : "SIGKILL"}`);
        await run.signal(graceMs > 0 ? "SIGTERM" : "SIGKILL");
        if (graceMs > 0) {
          const ended = await Promise.race([run.exited.then(() => true), sleep(graceMs).then(() => false)]);
          if (!ended) {
            const s = Number((graceMs / 1000).toFixed(graceMs % 1000 === 0 ? 0 : 1));
            this.#emitLog(inst.app.appId, "berth", inst.name, `Error R12 (Exit timeout) -> At least one process failed to exit within ${s} second${s === 1 ? "" : "s"} of SIGTERM`);
            this.#emitLog(inst.app.appId, "berth", inst.name, "Stopping remaining processes with SIGKILL");
            await run.signal("SIGKILL");
          }
        }
        await run.exited;
      }
      if (inst.port !== undefined) this.#ports.release(inst.port);
      inst.port = undefined;
      inst.app.instances.delete(inst);
      this.#setState(inst, "down");
    })();
    return inst.stopping;
  }

  #clearTimer(inst: Inst): void {
    if (inst.timer) this.#clock.clearTimeout(inst.timer);
    inst.timer = undefined;
  }

  // ---- records --------------------------------------------------------------

  /** Writes the app's record soon (coalesced); deletes it once the app is removed or runs nothing. */
  #save(app: AppState): void {
    if (this.#closed) return;
    app.dirty = true;
    app.saving ??= (async () => {
      // Let the rest of this turn's changes in first.
      await Promise.resolve();
      while (app.dirty) {
        app.dirty = false;
        await this.#write(app);
      }
    })().finally(() => (app.saving = undefined));
  }

  /** Resolves once the record on disk says what the app is now (operations resolve only then). */
  async #persist(app: AppState): Promise<void> {
    this.#save(app);
    await app.saving;
  }

  /** Waits for a write in flight, then writes the record as it is now (even once closed). */
  async #flush(app: AppState): Promise<void> {
    await app.saving;
    await this.#write(app);
  }

  async #write(app: AppState): Promise<void> {
    try {
      if (app.removed || (app.instances.size === 0 && !app.current)) {
        await fs.rm(app.file, { force: true });
        return;
      }
      app.savedOffsets = offsetsOf(app);
      const tmp = `${app.file}.${randomBytes(4).toString("hex")}.tmp`;
      // Config vars are in it: for this process's user only.
      await fs.writeFile(tmp, JSON.stringify(this.#record(app)), { mode: 0o600 });
      await fs.rename(tmp, app.file);
    } catch (e) {
      this.#log.warn("could not write the app record; a restarted runtime may not adopt its instances", { appId: app.appId, err: e });
    }
  }

  #record(app: AppState): AppRecord {
    const deployments: AppRecord["deployments"] = {};
    const add = (d: Deployment) => (deployments[d.id] = { desired: d.desired, image: d.image });
    if (app.current) add(app.current);
    const instances: InstRecord[] = [];
    for (const i of app.instances) {
      add(i.dep);
      const r: InstRecord = {
        deployment: i.dep.id,
        type: i.spec.type,
        index: i.index,
        state: i.state,
        startedAt: i.startedAt.getTime(),
        restarts: i.restarts,
        crashes: i.crashes,
      };
      if (i.upSince !== undefined) r.upSince = i.upSince;
      if (i.lastExit !== undefined) r.lastExit = i.lastExit;
      if (i.run) {
        r.run = { id: i.run.id, logOffset: i.run.logOffset() };
        if (i.port !== undefined) r.port = i.port;
      }
      instances.push(r);
    }
    const record: AppRecord = { v: 1, appId: app.appId, frozen: app.frozen, deployments, instances };
    if (app.current) record.current = app.current.id;
    return record;
  }

  #schedulePrune(): void {
    if (this.#closed) return;
    this.pruneImages().catch((e: unknown) => this.#log.warn("image cache prune failed", { err: e }));
  }

  /** Keeps an image from being pruned while an operation prepares and starts it. */
  #pin(ref: DesiredApp["image"]): () => void {
    if (ref.kind !== "layout") return () => undefined;
    const d = ref.digest;
    this.#pinned.set(d, (this.#pinned.get(d) ?? 0) + 1);
    return () => {
      const n = (this.#pinned.get(d) ?? 1) - 1;
      if (n > 0) this.#pinned.set(d, n);
      else this.#pinned.delete(d);
    };
  }

  // ---- helpers --------------------------------------------------------------

  #app(appId: string): AppState {
    let app = this.#apps.get(appId);
    if (!app) {
      app = {
        appId,
        instances: new Set(),
        oneOffs: new Set(),
        queue: Promise.resolve(),
        removed: false,
        frozen: false,
        file: recordFile(this.#recordsDir, appId),
        dirty: false,
        savedOffsets: "",
      };
      this.#apps.set(appId, app);
    }
    return app;
  }

  /** Runs fn after the app's previous operation; `create` makes the app known, otherwise it must exist. */
  #serial<T>(appId: string, create: boolean, fn: (app: AppState) => Promise<T>): Promise<T> {
    const existing = this.#apps.get(appId);
    if (!existing && !create) return Promise.reject(new NotFound("app"));
    const app = existing ?? this.#app(appId);
    const result = app.queue.then(() => {
      if (app.removed && this.#apps.get(appId) !== app) {
        // Removed while queued: a later apply starts from a fresh record.
        if (!create) throw new NotFound("app");
        return this.#serial(appId, create, fn);
      }
      return fn(app);
    });
    app.queue = result.catch(() => undefined);
    return result;
  }

  /** The current release's instances that are not on their way out. */
  #live(app: AppState): Inst[] {
    return [...app.instances].filter((i) => i.dep === app.current && !i.stopping);
  }

  #env(desired: DesiredApp, image: PreparedImage, dyno: string, port: number): Record<string, string> {
    const view = this.#driver.paths(image);
    const dirs = [
      `${view.app}/bin`,
      `${view.app}/node_modules/.bin`,
      `${view.app}/.heroku/node/bin`,
      ...(view.layers ? image.layerBins.map((b) => `${view.layers}/${b}`) : []),
      ...(view.nodeBin ? [view.nodeBin] : []),
    ];
    const system = image.env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
    return {
      HOME: view.app,
      ...image.env,
      PATH: [...dirs, system].join(":"),
      ...desired.env,
      PORT: String(port),
      DYNO: dyno,
    };
  }

  /** The dyno user (65534) must be able to enter the image directory, or every boot fails with EACCES. */
  async #checkReadable(image: PreparedImage): Promise<void> {
    if (!this.#driver.isolated) return;
    const st = await fs.stat(image.appDir);
    const forOthers = (st.mode & 0o005) === 0o005;
    const forDyno = st.uid === DYNO_UID && (st.mode & 0o500) === 0o500;
    if (!forOthers && !forDyno) {
      throw new Invalid(`image directory ${image.appDir} is not readable by the dyno user (uid ${DYNO_UID}): mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}`);
    }
  }

  #view(i: Inst): Instance {
    const out: Instance = {
      name: i.name,
      appId: i.app.appId,
      type: i.spec.type,
      release: i.dep.desired.release,
      state: i.state,
      startedAt: i.startedAt,
      restarts: i.restarts,
      size: i.spec.size.name,
    };
    if (i.lastExit !== undefined) out.lastExit = i.lastExit;
    if (i.spec.type === "web" && i.port !== undefined && (i.state === "up" || i.state === "frozen")) {
      out.address = { host: "127.0.0.1", port: i.port };
    }
    return out;
  }

  #setState(inst: Inst, state: InstanceState): void {
    const from = inst.state;
    inst.state = state;
    if (from !== state && state !== "down" && from !== "down") {
      this.#emitLog(inst.app.appId, "berth", inst.name, `State changed from ${from} to ${state}`);
    }
    this.#save(inst.app);
    this.#emit({ kind: "instance", instance: this.#view(inst) });
  }

  #emitLog(appId: string, source: string, dyno: string, text: string): void {
    this.#emit({ kind: "log", line: { appId, at: new Date(this.#clock.now()), source, dyno, text } });
  }

  #emit(e: RuntimeEvent): void {
    if (this.#backlog) {
      this.#backlog.push(e);
      if (this.#backlog.length > MAX_BACKLOG) this.#backlog.shift();
      return;
    }
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log.warn("runtime event listener threw", { err });
      }
    }
  }
}

function offsetsOf(app: AppState): string {
  return [...app.instances].map((i) => i.run?.logOffset() ?? "").join(",");
}

function recordFile(dir: string, appId: string): string {
  return path.join(dir, `${createHash("sha256").update(appId).digest("hex").slice(0, 32)}.json`);
}

const STATES = new Set<InstanceState>(["starting", "up", "crashed", "frozen", "stopping", "down"]);

/** A record as written by #record, or undefined: an invalid record's instances are not adopted (and so get killed). */
function parseRecord(text: string): AppRecord | undefined {
  try {
    const r = JSON.parse(text) as AppRecord;
    if (r?.v !== 1 || typeof r.appId !== "string" || typeof r.frozen !== "boolean") return undefined;
    if (typeof r.deployments !== "object" || r.deployments === null || !Array.isArray(r.instances)) return undefined;
    for (const d of Object.values(r.deployments)) {
      validate(d.desired);
      if (d.desired.appId !== r.appId || typeof d.image?.appDir !== "string" || !Array.isArray(d.image.layerBins)) return undefined;
    }
    if (r.current !== undefined && !(r.current in r.deployments)) return undefined;
    for (const i of r.instances) {
      const ok =
        typeof i.deployment === "string" &&
        typeof i.type === "string" &&
        Number.isInteger(i.index) &&
        i.index > 0 &&
        STATES.has(i.state) &&
        Number.isFinite(i.startedAt) &&
        Number.isInteger(i.restarts) &&
        Number.isInteger(i.crashes) &&
        (i.port === undefined || (Number.isInteger(i.port) && i.port > 0 && i.port < 65536)) &&
        (i.run === undefined || (validRunId(i.run.id) && Number.isInteger(i.run.logOffset) && i.run.logOffset >= 0));
      if (!ok) return undefined;
    }
    return r;
  } catch {
    return undefined;
  }
}

function validate(d: DesiredApp): void {
  if (!d.appId) throw new Invalid("appId is required");
  if (!(d.bootTimeoutMs > 0)) throw new Invalid(`bootTimeoutMs ${d.bootTimeoutMs} must be > 0`);
  if (!(d.graceMs >= 0)) throw new Invalid(`graceMs ${d.graceMs} must be ≥ 0`);
  const seen = new Set<string>();
  for (const p of d.processes) {
    if (seen.has(p.type)) throw new Invalid(`process type ${p.type} is listed twice`);
    seen.add(p.type);
    if (!Number.isInteger(p.quantity) || p.quantity < 0) throw new Invalid(`quantity ${p.quantity} of ${p.type} must be a whole number ≥ 0`);
    if (!p.command.trim()) throw new Invalid(`process type ${p.type} has no command`);
    checkSize(p.size);
  }
}

function checkSize(s: DynoSize): void {
  if (!(s.memoryMb >= 16 && s.pids >= 8 && s.cpuShares >= 2)) throw new Invalid(`dyno size ${s.name} is too small to run anything`);
}

/** runc ids must match [\w+-.]+ and be unique on the machine (they name cgroups). */
function containerId(appId: string, dyno: string): string {
  const slug = (s: string, max: number) => s.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, max);
  return `berth-${slug(appId, 40)}-${slug(dyno, 40)}-${randomBytes(4).toString("hex")}`;
}
