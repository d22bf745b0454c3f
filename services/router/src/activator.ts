import type { Clock, Logger, TimerHandle } from "@berth/core";
import type { ColdTier } from "./autoscaler.ts";

/** What the activator reads from the route table. */
export interface ReadyWatch {
  has(appId: string): boolean;
  readyCount(appId: string): number;
  /** Tier as the control plane reports it (instances in state "frozen"). */
  coldTier(appId: string): ColdTier;
  subscribe(listener: (appId: string) => void): () => void;
}

/** Brings a sleeping app back; the Autoscaler implements it over the platform's Waker. */
export interface AppWaker {
  /** Set while the router itself put the app to sleep: its listed instances cannot serve. */
  asleep(appId: string): ColdTier | undefined;
  wake(appId: string): Promise<void>;
}

export type ActivationFailure = "H10" | "H11" | "H20" | "H27" | "NO_APP";

/** Why a held request was not forwarded; the proxy maps `code` to a response. */
export class ActivationError extends Error {
  readonly code: ActivationFailure;
  constructor(code: ActivationFailure, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "ActivationError";
    this.code = code;
  }
}

export interface ActivatorOptions {
  table: ReadyWatch;
  waker: AppWaker;
  clock: Clock;
  logger: Logger;
  /** Held requests per app beyond which new ones get 503 H11. */
  maxQueue?: number;
  /** How long a request may wait for a ready instance before 503 H20. */
  maxWaitMs?: number;
  onColdStart?: (appId: string, ms: number, tier: ColdTier) => void;
}

interface Waiter {
  resolve: () => void;
  reject: (e: ActivationError) => void;
  timer: TimerHandle;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Pending {
  waiters: Set<Waiter>;
  waking: boolean;
  /** Set from the first held request until the app is ready: one cold start. */
  cold: { start: number; tier: ColdTier } | undefined;
}

/**
 * Holds requests for apps with no ready instance, wakes the app once per cold start,
 * and releases the requests when the route table reports a ready instance. Readiness
 * arrives as table notifications (and the wake's own completion): there is no polling.
 */
export class Activator {
  readonly #table: ReadyWatch;
  readonly #waker: AppWaker;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #maxQueue: number;
  readonly #maxWaitMs: number;
  readonly #onColdStart: ActivatorOptions["onColdStart"];
  readonly #pending = new Map<string, Pending>();
  readonly #unsubscribe: () => void;

  constructor(opts: ActivatorOptions) {
    this.#table = opts.table;
    this.#waker = opts.waker;
    this.#clock = opts.clock;
    this.#logger = opts.logger;
    this.#maxQueue = opts.maxQueue ?? 100;
    this.#maxWaitMs = opts.maxWaitMs ?? 60_000;
    this.#onColdStart = opts.onColdStart;
    this.#unsubscribe = this.#table.subscribe((appId) => this.#check(appId));
  }

  /** Whether a request can be forwarded right now without waiting. */
  isReady(appId: string): boolean {
    return this.#table.readyCount(appId) > 0 && this.#waker.asleep(appId) === undefined;
  }

  /** Requests currently held for the app. */
  queued(appId: string): number {
    return this.#pending.get(appId)?.waiters.size ?? 0;
  }

  /**
   * Resolve once the app can take the request; reject with ActivationError on overflow
   * (H11), timeout (H20), a failed wake (H10), client abort (H27) or removal (NO_APP).
   */
  wait(appId: string, signal?: AbortSignal): Promise<void> {
    if (this.isReady(appId)) return Promise.resolve();
    if (!this.#table.has(appId)) return Promise.reject(new ActivationError("NO_APP", "no such app"));
    if (signal?.aborted) return Promise.reject(new ActivationError("H27", "client went away"));
    let p = this.#pending.get(appId);
    if (!p) this.#pending.set(appId, (p = { waiters: new Set(), waking: false, cold: undefined }));
    if (p.waiters.size >= this.#maxQueue) {
      return Promise.reject(new ActivationError("H11", `more than ${this.#maxQueue} requests waiting for the app to start`));
    }
    const pending = p;
    const promise = new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: undefined,
        timer: this.#clock.setTimeout(() => this.#fail(appId, w, new ActivationError("H20", `no ready instance within ${this.#maxWaitMs} ms`)), this.#maxWaitMs),
      };
      if (signal) {
        w.onAbort = () => this.#fail(appId, w, new ActivationError("H27", "client went away"));
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      pending.waiters.add(w);
    });
    this.#kick(appId, pending);
    return promise;
  }

  /** Fail every held request (router shutdown) and stop listening to the table. */
  close(): void {
    this.#unsubscribe();
    for (const [appId, p] of this.#pending) {
      for (const w of [...p.waiters]) this.#fail(appId, w, new ActivationError("H20", "router shutting down"));
    }
    this.#pending.clear();
  }

  #kick(appId: string, p: Pending): void {
    if (p.waking) return;
    p.waking = true;
    p.cold ??= { start: this.#clock.now(), tier: this.#waker.asleep(appId) ?? this.#table.coldTier(appId) };
    this.#waker.wake(appId).then(
      () => {
        p.waking = false;
        this.#check(appId);
      },
      (err: unknown) => {
        p.waking = false;
        p.cold = undefined;
        this.#logger.warn("wake failed; failing held requests", { appId, held: p.waiters.size, err });
        for (const w of [...p.waiters]) this.#fail(appId, w, new ActivationError("H10", "app failed to start", err));
      },
    );
  }

  #check(appId: string): void {
    const p = this.#pending.get(appId);
    if (!p) return;
    if (!this.#table.has(appId)) {
      for (const w of [...p.waiters]) this.#fail(appId, w, new ActivationError("NO_APP", "app was removed"));
      this.#pending.delete(appId);
      return;
    }
    if (!this.isReady(appId)) {
      // Still waiting. If the app went back to sleep while we held requests (it cannot
      // while they count as in flight, but a control plane may stop it), wake again.
      if (!p.waking && p.waiters.size > 0 && this.#waker.asleep(appId) !== undefined) this.#kick(appId, p);
      return;
    }
    if (p.cold) {
      const ms = this.#clock.now() - p.cold.start;
      const tier = p.cold.tier;
      p.cold = undefined;
      this.#logger.info("cold start", { appId, ms, tier });
      this.#onColdStart?.(appId, ms, tier);
    }
    const ws = [...p.waiters];
    p.waiters.clear();
    if (!p.waking) this.#pending.delete(appId);
    for (const w of ws) {
      this.#detach(w);
      w.resolve();
    }
  }

  #fail(appId: string, w: Waiter, err: ActivationError): void {
    const p = this.#pending.get(appId);
    if (!p?.waiters.delete(w)) return;
    this.#detach(w);
    if (p.waiters.size === 0 && !p.waking) this.#pending.delete(appId);
    w.reject(err);
  }

  #detach(w: Waiter): void {
    this.#clock.clearTimeout(w.timer);
    if (w.signal && w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
  }
}
