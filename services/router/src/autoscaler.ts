import type { Clock, Logger, TimerHandle } from "@berth/core";
import type { ScalePolicy } from "./routes.ts";

/** Where a cold start comes from: a frozen app thaws in milliseconds, a stopped one boots. */
export type ColdTier = "frozen" | "zero";
export type SleepState = "frozen" | "stopped";

/** How the router brings apps up and lays idle ones down; the control plane implements it. */
export interface Waker {
  /** Make at least one instance ready: thaw if frozen, else start one. Must be idempotent. */
  wake(appId: string): Promise<void>;
  /** Tier 1: suspend the app's instances in place. Absent when the runtime cannot freeze. */
  freeze?(appId: string): Promise<void>;
  /** Tier 2: scale the app to zero instances. */
  stop(appId: string): Promise<void>;
}

/** Sets the number of web instances of an app (the formation's quantity). */
export interface Scaler {
  scale(appId: string, instances: number): Promise<void> | void;
}

/** What the autoscaler reads from the route table (Knative's podCounter, plus the policy). */
export interface ScaleSource {
  routes(): Iterable<{ appId: string; scale: ScalePolicy }>;
  readyCount(appId: string): number;
}

export interface AutoscalerTuning {
  /** Sampling period of in-flight concurrency. */
  tickMs: number;
  stableWindowMs: number;
  panicWindowMs: number;
  /** Enter panic when panic-window desired / ready instances reaches this. */
  panicThreshold: number;
}

export const DEFAULT_TUNING: AutoscalerTuning = { tickMs: 1000, stableWindowMs: 60_000, panicWindowMs: 6_000, panicThreshold: 2 };

export interface AutoscalerOptions extends Partial<AutoscalerTuning> {
  clock: Clock;
  logger: Logger;
  waker: Waker;
  scaler?: Scaler;
  source: ScaleSource;
}

/** Read-only view of one app's autoscaling state (metrics, tests, debugging). */
export interface AppScaleStatus {
  inFlight: number;
  stableConcurrency: number;
  panicConcurrency: number;
  panicking: boolean;
  /** Last instance count asked of the scaler (or seen, before the first decision). */
  desired: number | undefined;
  sleeping: SleepState | undefined;
}

interface AppState {
  inFlight: number;
  /** Integral of in-flight over time (request·ms) since windowStart. */
  area: number;
  lastChange: number;
  windowStart: number;
  /** Average concurrency per tick, oldest first; at most one stable window's worth. */
  samples: number[];
  /** When in-flight last dropped to zero; undefined while busy. */
  idleSince: number | undefined;
  sleeping: SleepState | undefined;
  /** A tier whose call failed; not retried until the next request. */
  failedTier: SleepState | undefined;
  /** freeze/stop/wake of one app run one after another, never concurrently. */
  ops: Promise<void>;
  waking: Promise<void> | undefined;
  panicSince: number | undefined;
  maxPanic: number;
  lastScale: number | undefined;
}

const EPS = 1e-9;

function average(xs: readonly number[], lastN: number): number {
  const n = Math.min(lastN, xs.length);
  if (n === 0) return 0;
  let sum = 0;
  for (let i = xs.length - n; i < xs.length; i++) sum += xs[i]!;
  return sum / n;
}

/**
 * Knative KPA semantics over router-observed concurrency, plus two-tier idle
 * scale-to-zero. See SCALING.md for the whole data path.
 *
 * Invariants:
 * - Every decision is driven by the injected clock (one timer per tick), so tests
 *   replay minutes of traffic with ManualClock in microseconds.
 * - Held requests count as in flight: a burst that arrives at zero scales up as soon
 *   as the app is awake.
 * - No scale-down while panicking, and none before a full stable window of history:
 *   a restarted router has lost its metrics and must not shrink apps on a partial view.
 * - Sleeping (frozen or stopped) apps get no scale decisions; only a wake ends sleep.
 */
export class Autoscaler {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #waker: Waker;
  readonly #scaler: Scaler | undefined;
  readonly #source: ScaleSource;
  readonly #tuning: AutoscalerTuning;
  readonly #stableN: number;
  readonly #panicN: number;
  #apps = new Map<string, AppState>();
  #timer: TimerHandle | undefined;
  #running = false;

  constructor(opts: AutoscalerOptions) {
    this.#clock = opts.clock;
    this.#logger = opts.logger;
    this.#waker = opts.waker;
    this.#scaler = opts.scaler;
    this.#source = opts.source;
    this.#tuning = {
      tickMs: opts.tickMs ?? DEFAULT_TUNING.tickMs,
      stableWindowMs: opts.stableWindowMs ?? DEFAULT_TUNING.stableWindowMs,
      panicWindowMs: opts.panicWindowMs ?? DEFAULT_TUNING.panicWindowMs,
      panicThreshold: opts.panicThreshold ?? DEFAULT_TUNING.panicThreshold,
    };
    const t = this.#tuning;
    if (!(t.tickMs > 0) || !(t.panicWindowMs >= t.tickMs) || !(t.stableWindowMs >= t.panicWindowMs) || !(t.panicThreshold > 1)) {
      throw new RangeError(`autoscaler tuning out of range: ${JSON.stringify(t)}`);
    }
    this.#stableN = Math.round(t.stableWindowMs / t.tickMs);
    this.#panicN = Math.round(t.panicWindowMs / t.tickMs);
  }

  /** Begin sampling every tickMs on the clock. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** A request for the app entered the router (including one about to be held). */
  requestStarted(appId: string): void {
    const st = this.#state(appId);
    this.#accumulate(st, this.#clock.now());
    st.inFlight++;
    st.idleSince = undefined;
    st.failedTier = undefined;
  }

  requestEnded(appId: string): void {
    const st = this.#apps.get(appId);
    if (!st || st.inFlight === 0) return;
    const now = this.#clock.now();
    this.#accumulate(st, now);
    if (--st.inFlight === 0) st.idleSince = now;
  }

  /** Whether the autoscaler put the app to sleep; requests must wake it before forwarding. */
  asleep(appId: string): ColdTier | undefined {
    const s = this.#apps.get(appId)?.sleeping;
    return s === undefined ? undefined : s === "frozen" ? "frozen" : "zero";
  }

  /**
   * Wake the app through the Waker, after any freeze/stop still in progress; concurrent
   * callers share one wake. Resolves once the waker has; readiness is the table's word.
   */
  wake(appId: string): Promise<void> {
    const st = this.#state(appId);
    if (st.waking) return st.waking;
    const from = st.sleeping ?? "unknown";
    const p = st.ops
      .then(() => this.#waker.wake(appId))
      .then(
        () => {
          st.sleeping = undefined;
          st.failedTier = undefined;
          st.lastScale = undefined;
          if (st.inFlight === 0) st.idleSince = this.#clock.now();
          this.#logger.info("app woken", { appId, from });
        },
        (err: unknown) => {
          this.#logger.warn("wake failed", { appId, from, err });
          throw err;
        },
      )
      .finally(() => {
        st.waking = undefined;
      });
    st.waking = p;
    st.ops = p.catch(() => {});
    return p;
  }

  status(appId: string): AppScaleStatus | undefined {
    const st = this.#apps.get(appId);
    if (!st) return undefined;
    return {
      inFlight: st.inFlight,
      stableConcurrency: average(st.samples, this.#stableN),
      panicConcurrency: average(st.samples, this.#panicN),
      panicking: st.panicSince !== undefined,
      desired: st.sleeping === "stopped" ? 0 : st.lastScale,
      sleeping: st.sleeping,
    };
  }

  /** One sampling and decision round; the timer calls it every tickMs. */
  tick(): void {
    const now = this.#clock.now();
    const seen = new Set<string>();
    for (const r of this.#source.routes()) {
      seen.add(r.appId);
      const st = this.#state(r.appId);
      this.#sample(st, now);
      this.#idle(r.appId, r.scale, st, now);
      if (st.sleeping === undefined && st.waking === undefined) this.#decide(r.appId, r.scale, st, now);
    }
    for (const [id, st] of this.#apps) if (!seen.has(id) && st.inFlight === 0 && !st.waking) this.#apps.delete(id);
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (!this.#running) return;
      try {
        this.tick();
      } catch (err) {
        this.#logger.error("autoscaler tick failed", { err });
      }
      if (this.#running) this.#schedule();
    }, this.#tuning.tickMs);
  }

  #state(appId: string): AppState {
    let st = this.#apps.get(appId);
    if (!st) {
      const now = this.#clock.now();
      st = {
        inFlight: 0, area: 0, lastChange: now, windowStart: now, samples: [], idleSince: now,
        sleeping: undefined, failedTier: undefined, ops: Promise.resolve(), waking: undefined,
        panicSince: undefined, maxPanic: 0, lastScale: undefined,
      };
      this.#apps.set(appId, st);
    }
    return st;
  }

  #accumulate(st: AppState, now: number): void {
    st.area += st.inFlight * (now - st.lastChange);
    st.lastChange = now;
  }

  /** Time-weighted average concurrency since the last tick: a 10 ms request counts 1/100. */
  #sample(st: AppState, now: number): void {
    this.#accumulate(st, now);
    const span = now - st.windowStart;
    if (span <= 0) return;
    st.samples.push(st.area / span);
    if (st.samples.length > this.#stableN) st.samples.splice(0, st.samples.length - this.#stableN);
    st.area = 0;
    st.windowStart = now;
  }

  #idle(appId: string, policy: ScalePolicy, st: AppState, now: number): void {
    if (policy.min > 0 || st.inFlight > 0 || st.idleSince === undefined || st.waking) return;
    const idle = now - st.idleSince;
    if (policy.idleStopMs > 0 && idle >= policy.idleStopMs) {
      if (st.sleeping !== "stopped" && st.failedTier !== "stopped") this.#sleep(appId, st, "stopped");
      return;
    }
    const canFreeze = this.#waker.freeze !== undefined && this.#source.readyCount(appId) > 0;
    if (canFreeze && policy.idleFreezeMs > 0 && idle >= policy.idleFreezeMs && st.sleeping === undefined && st.failedTier !== "frozen") {
      this.#sleep(appId, st, "frozen");
    }
  }

  #sleep(appId: string, st: AppState, tier: SleepState): void {
    const prev = st.sleeping;
    // Marked before the call completes: a request arriving meanwhile must wait for a wake.
    st.sleeping = tier;
    st.panicSince = undefined;
    st.maxPanic = 0;
    if (tier === "stopped") st.lastScale = 0;
    this.#logger.info(tier === "frozen" ? "freezing idle app" : "stopping idle app", { appId });
    st.ops = st.ops
      .then(() => (tier === "frozen" ? this.#waker.freeze!(appId) : this.#waker.stop(appId)))
      .catch((err: unknown) => {
        this.#logger.warn(`${tier === "frozen" ? "freeze" : "stop"} failed`, { appId, err });
        if (st.sleeping === tier) st.sleeping = prev;
        if (tier === "stopped") st.lastScale = undefined;
        st.failedTier = tier;
      });
  }

  #decide(appId: string, policy: ScalePolicy, st: AppState, now: number): void {
    const ready = this.#source.readyCount(appId);
    st.lastScale ??= ready;
    const target = policy.targetConcurrency;
    const stableAvg = average(st.samples, this.#stableN);
    const panicAvg = average(st.samples, this.#panicN);
    const desiredStable = Math.ceil(stableAvg / target - EPS);
    const desiredPanic = Math.ceil(panicAvg / target - EPS);
    const overThreshold = panicAvg / target / Math.max(1, ready) >= this.#tuning.panicThreshold;
    if (overThreshold) {
      if (st.panicSince === undefined) this.#logger.info("autoscaler panic", { appId, ready, panicConcurrency: panicAvg });
      st.panicSince = now;
    } else if (st.panicSince !== undefined && now - st.panicSince >= this.#tuning.stableWindowMs) {
      // The surge has been in the stable window long enough for it to speak for itself.
      this.#logger.info("autoscaler panic over", { appId });
      st.panicSince = undefined;
      st.maxPanic = 0;
    }
    let desired = desiredStable;
    if (st.panicSince !== undefined) {
      desired = Math.max(desiredStable, desiredPanic, st.maxPanic, st.lastScale);
      st.maxPanic = desired;
    }
    desired = Math.min(Math.max(desired, Math.max(1, policy.min)), policy.max);
    if (desired < st.lastScale && st.samples.length < this.#stableN) desired = st.lastScale;
    if (desired === st.lastScale) return;
    const from = st.lastScale;
    st.lastScale = desired;
    this.#logger.info("autoscale", { appId, from, to: desired, stableConcurrency: stableAvg, panicConcurrency: panicAvg });
    if (!this.#scaler) return;
    const failed = (err: unknown) => {
      this.#logger.warn("scale failed", { appId, to: desired, err });
      // Forget the request so the next tick asks again.
      if (st.lastScale === desired) st.lastScale = undefined;
    };
    try {
      Promise.resolve(this.#scaler.scale(appId, desired)).catch(failed);
    } catch (err) {
      failed(err);
    }
  }
}
