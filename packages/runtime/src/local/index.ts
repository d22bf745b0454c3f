/**
 * The local runtime, the embedded default: every instance runs on this machine as
 * a runc container (runc.ts), or as a plain child process when runc is missing or
 * fails its self-test (process.ts). See packages/runtime/README.md for what each
 * isolates and the measured figures.
 *
 * Bookkeeping lives here: releases, start-first apply, readiness, crash restarts
 * with exponential backoff, scale, freeze, one-off runs, logs and events.
 */
import { randomBytes } from "node:crypto";
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
import { DYNO_UID, ImageCache, type PreparedImage } from "./image.ts";
import { PortAllocator, type PortRange } from "./ports.ts";
import { describeExit, seconds, waitReady, type Readiness } from "./probe.ts";
import { createProcessDriver } from "./process.ts";
import { createRuncDriver } from "./runc.ts";

export interface LocalRuntimeOptions {
  /** Owned by this runtime alone: runc state, bundles, unpacked images. */
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
}

export interface LocalRuntime extends Runtime {
  /** "runc", or "process" when running without isolation. */
  readonly isolation: "runc" | "process";
  /** Kills every instance and one-off run now (SIGKILL) and deletes leftover containers. For tests and shutdown. */
  stopAll(): Promise<void>;
}

/** First crash-restart delay; doubles per consecutive crash up to MAX_BACKOFF_MS. */
export const FIRST_BACKOFF_MS = 1000;
export const MAX_BACKOFF_MS = 5 * 60_000;
/** An instance up this long without crashing starts its backoff from the beginning again. */
const BACKOFF_RESET_MS = 10 * 60_000;
/** One-off output kept for the caller (the log stream gets everything). */
const MAX_ONE_OFF_OUTPUT = 1024 * 1024;

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
      // Containers of a previous runtime on this state dir have no supervisor left.
      await driver.reapAll();
    } catch (e) {
      opts.logger.warn("runc unavailable: instances run as plain processes, without isolation", { err: (e as Error).message });
    }
  } else {
    opts.logger.warn("runc not wanted (preferRunc false): instances run as plain processes, without isolation");
  }
  driver ??= createProcessDriver({ nodeBinary });
  return new Local(opts, stateDir, driver);
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
  readonly #settleMs: number;
  readonly #apps = new Map<string, AppState>();
  readonly #listeners = new Set<(e: RuntimeEvent) => void>();
  #oneOffSeq = 0;
  #closed = false;

  constructor(opts: LocalRuntimeOptions, stateDir: string, driver: Driver) {
    this.#clock = opts.clock;
    this.#log = opts.logger.child({ runtime: "local", isolation: driver.kind });
    this.#driver = driver;
    this.isolation = driver.kind;
    this.#ports = new PortAllocator(opts.portRange ?? { from: 20000, to: 29999 });
    this.#images = new ImageCache(path.join(stateDir, "images"));
    this.#stateDir = stateDir;
    this.#settleMs = opts.settleMs ?? 500;
  }

  // ---- Runtime --------------------------------------------------------------

  async apply(desired: DesiredApp): Promise<void> {
    validate(desired);
    await this.#serial(desired.appId, true, async (app) => {
      const image = await this.#images.prepare(desired.image);
      await this.#checkReadable(image);
      const dep: Deployment = { desired, image };
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
      await Promise.all(old.map((i) => this.#stop(i, i.dep.desired.graceMs)));
    });
  }

  async scale(appId: string, type: string, quantity: number): Promise<void> {
    if (!Number.isInteger(quantity) || quantity < 0) throw new Invalid(`quantity ${quantity} must be a whole number ≥ 0`);
    await this.#serial(appId, false, async (app) => {
      const dep = app.current;
      const spec = dep?.desired.processes.find((p) => p.type === type);
      if (!dep || !spec) throw new NotFound(`process type ${type}`);
      const updated: ProcessSpec = { ...spec, quantity };
      dep.desired = { ...dep.desired, processes: dep.desired.processes.map((p) => (p === spec ? updated : p)) };
      const live = this.#live(app).filter((i) => i.spec.type === type).sort((a, b) => a.index - b.index);
      for (const inst of live) inst.spec = updated;
      if (live.length > quantity) {
        await Promise.all(live.slice(quantity).map((i) => this.#stop(i, dep.desired.graceMs)));
        return;
      }
      const taken = new Set(live.map((i) => i.index));
      const fresh: Inst[] = [];
      for (let index = 1; fresh.length + live.length < quantity; index++) {
        if (!taken.has(index)) fresh.push(this.#newInst(app, dep, updated, index));
      }
      await Promise.all(fresh.map((i) => this.#startOrCrash(i)));
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

  /** Output is stdout and stderr interleaved as they arrive (first 1 MiB); a timeout kills it and answers exit code 124. */
  async runOnce(desired: DesiredApp, command: string, opts: { timeoutMs: number }): Promise<{ exitCode: number; output: string }> {
    const image = await this.#images.prepare(desired.image);
    await this.#checkReadable(image);
    const app = this.#app(desired.appId);
    const dyno = `run.${++this.#oneOffSeq}`;
    const size = desired.processes.find((p) => p.type === "release")?.size ?? desired.processes[0]?.size ?? DYNO_SIZES["standard-1x"]!;
    const port = await this.#ports.allocate();
    let output = "";
    let truncated = false;
    const keep = (line: string) => {
      if (output.length + line.length + 1 > MAX_ONE_OFF_OUTPUT) truncated = true;
      else output += line + "\n";
    };
    try {
      const run = await this.#driver.launch(
        { id: containerId(desired.appId, dyno), dyno, command, env: this.#env(desired, image, dyno, port), image, size },
        (_stream, text) => {
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
        output += `berth: timed out after ${seconds(opts.timeoutMs)}, killed\n`;
        return { exitCode: 124, output };
      }
      if (exit.oom) output += "berth: killed: out of memory\n";
      this.#emitLog(desired.appId, "berth", dyno, `Process exited with status ${exit.code}`);
      return { exitCode: exit.code, output };
    } finally {
      this.#ports.release(port);
    }
  }

  /** Freezes the current release's up instances (cgroup freezer; SIGSTOP without runc). Connections queue in the kernel meanwhile. */
  async freeze(appId: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      await Promise.all(
        this.#live(app)
          .filter((i) => i.state === "up" && i.run)
          .map(async (inst) => {
            await inst.run!.pause();
            this.#setState(inst, "frozen");
          }),
      );
    });
  }

  async thaw(appId: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      await Promise.all(
        this.#live(app)
          .filter((i) => i.state === "frozen" && i.run)
          .map(async (inst) => {
            await inst.run!.resume();
            this.#setState(inst, "up");
          }),
      );
    });
  }

  async remove(appId: string): Promise<void> {
    await this.#serial(appId, false, async (app) => {
      app.removed = true;
      for (const run of app.oneOffs) void run.signal("SIGKILL");
      await Promise.all([...app.instances].map((i) => this.#stop(i, i.dep.desired.graceMs)));
      await Promise.all([...app.oneOffs].map((r) => r.exited));
      this.#apps.delete(appId);
    });
  }

  subscribe(listener: (e: RuntimeEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops restart timers and event delivery. Instances keep running while this process lives. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const app of this.#apps.values()) for (const inst of app.instances) this.#clearTimer(inst);
    this.#listeners.clear();
    await fs.rm(path.join(this.#stateDir, "owner.pid"), { force: true });
  }

  async stopAll(): Promise<void> {
    const apps = [...this.#apps.values()];
    for (const app of apps) app.removed = true;
    await Promise.all(
      apps.flatMap((app) => [
        ...[...app.instances].map((i) => this.#stop(i, 0)),
        ...[...app.oneOffs].map(async (r) => {
          await r.signal("SIGKILL");
          await r.exited;
        }),
      ]),
    );
    this.#apps.clear();
    await this.#driver.reapAll();
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
        (_stream, text) => this.#emitLog(inst.app.appId, "app", inst.name, text),
      );
    } catch (e) {
      this.#ports.release(port);
      inst.port = undefined;
      throw e;
    }
    inst.run = run;
    void run.exited.then((exit) => this.#onExit(inst, run, exit));
    const ready = await waitReady({
      port: inst.spec.type === "web" ? port : undefined,
      healthCheckPath: desired.healthCheckPath,
      timeoutMs: desired.bootTimeoutMs,
      settleMs: Math.min(this.#settleMs, desired.bootTimeoutMs),
      exited: run.exited,
      cancelled: () => inst.stopping !== undefined,
    });
    if (ready.ok && inst.stopping === undefined && inst.run === run) {
      inst.upSince = this.#clock.now();
      this.#setState(inst, "up");
    } else if (!ready.ok) {
      inst.lastExit = ready.lastExit;
    }
    return ready;
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
    this.#emitLog(inst.app.appId, "berth", inst.name, exit.oom ? "Process killed: out of memory" : `Process exited with status ${exit.code}`);
    // Exits while starting are the boot's to judge; exits while stopping are expected.
    if (inst.stopping || inst.state === "starting") return;
    this.#crashed(inst);
  }

  #crashed(inst: Inst): void {
    if (inst.upSince !== undefined && this.#clock.now() - inst.upSince >= BACKOFF_RESET_MS) inst.crashes = 0;
    inst.upSince = undefined;
    inst.crashes++;
    const delay = Math.min(FIRST_BACKOFF_MS * 2 ** (inst.crashes - 1), MAX_BACKOFF_MS);
    this.#setState(inst, "crashed");
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
        this.#emitLog(inst.app.appId, "berth", inst.name, "Stopping all processes with SIGTERM");
        await run.signal(graceMs > 0 ? "SIGTERM" : "SIGKILL");
        if (graceMs > 0) {
          const ended = await Promise.race([run.exited.then(() => true), sleep(graceMs).then(() => false)]);
          if (!ended) {
            this.#emitLog(inst.app.appId, "berth", inst.name, `Stopping process with SIGKILL after ${seconds(graceMs)}`);
            await run.signal("SIGKILL");
          }
        }
        await run.exited;
      }
      if (inst.port !== undefined) this.#ports.release(inst.port);
      inst.port = undefined;
      this.#setState(inst, "down");
      inst.app.instances.delete(inst);
    })();
    return inst.stopping;
  }

  #clearTimer(inst: Inst): void {
    if (inst.timer) this.#clock.clearTimeout(inst.timer);
    inst.timer = undefined;
  }

  // ---- helpers --------------------------------------------------------------

  #app(appId: string): AppState {
    let app = this.#apps.get(appId);
    if (!app) {
      app = { appId, instances: new Set(), oneOffs: new Set(), queue: Promise.resolve(), removed: false };
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
    this.#emit({ kind: "instance", instance: this.#view(inst) });
  }

  #emitLog(appId: string, source: string, dyno: string, text: string): void {
    this.#emit({ kind: "log", line: { appId, at: new Date(this.#clock.now()), source, dyno, text } });
  }

  #emit(e: RuntimeEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log.warn("runtime event listener threw", { err });
      }
    }
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
  const slug = appId.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 40);
  return `berth-${slug}-${dyno}-${randomBytes(4).toString("hex")}`;
}
