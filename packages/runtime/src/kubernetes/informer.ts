/**
 * A list + watch cache of one kind of object, as client-go's reflector keeps it:
 *
 * - list, remember the list's resourceVersion, watch from it (bookmarks on);
 * - a watch that ends (the server's timeout, a dropped connection) resumes from the
 *   last resourceVersion seen, so no event is lost and none is replayed;
 * - 410 Gone (the version was compacted away) means relist; the difference between
 *   the cache and the new list is delivered as ADDED/MODIFIED/DELETED changes;
 * - while the API server cannot be reached the informer is unhealthy, and readers
 *   must fail rather than serve a cache that silently stopped following the cluster.
 */
import { Unavailable, type Clock, type Logger, type TimerHandle } from "@berth/core";
import type { KubeObject, WatchEventType } from "./kube.ts";

export interface InformerSource<T extends KubeObject> {
  list(): Promise<{ items: T[]; resourceVersion: string }>;
  /** Watch from `resourceVersion`; `onDone` once when the stream ends; resolves once connected (or failed). */
  watch(resourceVersion: string, onEvent: (type: WatchEventType, obj: KubeObject) => void, onDone: (err?: unknown) => void): Promise<() => void>;
}

export interface Change<T> {
  type: "ADDED" | "MODIFIED" | "DELETED";
  obj: T;
  old?: T;
}

export interface InformerOptions<T> {
  clock: Clock;
  logger: Logger;
  /** Objects outside the filter are not cached (another runtime's namespaces). */
  filter?: (o: T) => boolean;
  /** Retry delays after failures: first, doubling up to max. Default 200 ms … 5 s. */
  backoff?: { firstMs: number; maxMs: number };
}

export const key = (o: KubeObject): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export class Informer<T extends KubeObject> {
  readonly name: string;
  readonly #source: InformerSource<T>;
  readonly #opts: InformerOptions<T>;
  readonly #store = new Map<string, T>();
  readonly #listeners = new Set<(c: Change<T>) => void>();
  readonly #syncWaiters = new Set<() => void>();
  #rv = "";
  #synced = false;
  #healthy = false;
  #lastError: unknown;
  #stopped = true;
  #stopWatch: (() => void) | undefined;
  #timer: TimerHandle | undefined;
  #delay = 0;
  /** Counts relists (tests, metrics). */
  relists = 0;

  constructor(name: string, source: InformerSource<T>, opts: InformerOptions<T>) {
    this.name = name;
    this.#source = source;
    this.#opts = opts;
  }

  /** Listed at least once and following the cluster now. */
  get healthy(): boolean {
    return this.#synced && this.#healthy;
  }

  get resourceVersion(): string {
    return this.#rv;
  }

  get lastError(): unknown {
    return this.#lastError;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.#relist();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) this.#opts.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#stopWatch?.();
    this.#stopWatch = undefined;
  }

  items(): T[] {
    return [...this.#store.values()];
  }

  get(k: string): T | undefined {
    return this.#store.get(k);
  }

  onChange(fn: (c: Change<T>) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Resolves once healthy; Unavailable when not within `timeoutMs` (real time: it waits on the network). */
  async whenHealthy(timeoutMs: number): Promise<void> {
    if (this.healthy) return;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(t);
        this.#syncWaiters.delete(done);
        resolve();
      };
      const t = setTimeout(() => {
        this.#syncWaiters.delete(done);
        reject(new Unavailable(`cannot follow ${this.name} in the cluster: ${errorText(this.#lastError) ?? "not synced yet"}`));
      }, timeoutMs);
      this.#syncWaiters.add(done);
    });
  }

  async #relist(): Promise<void> {
    if (this.#stopped) return;
    let listed: { items: T[]; resourceVersion: string };
    try {
      listed = await this.#source.list();
    } catch (e) {
      this.#fail(e, () => void this.#relist());
      return;
    }
    if (this.#stopped) return;
    this.relists++;
    const fresh = new Map<string, T>();
    for (const o of listed.items) if (this.#keep(o)) fresh.set(key(o), o);
    const changes: Change<T>[] = [];
    for (const [k, old] of this.#store) if (!fresh.has(k)) changes.push({ type: "DELETED", obj: old, old });
    for (const [k, o] of fresh) {
      const old = this.#store.get(k);
      if (!old) changes.push({ type: "ADDED", obj: o });
      else if (old.metadata.resourceVersion !== o.metadata.resourceVersion) changes.push({ type: "MODIFIED", obj: o, old });
    }
    this.#store.clear();
    for (const [k, o] of fresh) this.#store.set(k, o);
    this.#rv = listed.resourceVersion;
    this.#synced = true;
    this.#setHealthy();
    for (const c of changes) this.#emit(c);
    void this.#watch();
  }

  async #watch(): Promise<void> {
    if (this.#stopped) return;
    let gone = false;
    let ended = false;
    let connected = false;
    const onEvent = (type: WatchEventType, obj: KubeObject) => {
      if (ended || this.#stopped) return;
      if (type === "ERROR") {
        const status = obj as unknown as { code?: number; message?: string };
        // 410: our resourceVersion is older than what etcd keeps. Anything else: start over too.
        gone = true;
        if (status.code !== 410) this.#opts.logger.warn("watch error event", { informer: this.name, code: status.code, message: status.message });
        return;
      }
      const rv = obj.metadata?.resourceVersion;
      if (rv) this.#rv = rv;
      if (type === "BOOKMARK") return;
      const o = obj as T;
      if (!this.#keep(o)) return;
      const k = key(o);
      const old = this.#store.get(k);
      if (type === "DELETED") {
        this.#store.delete(k);
        this.#emit({ type, obj: o, ...(old ? { old } : {}) });
      } else {
        this.#store.set(k, o);
        this.#emit({ type: old ? "MODIFIED" : "ADDED", obj: o, ...(old ? { old } : {}) });
      }
    };
    const onDone = (err?: unknown) => {
      if (ended) return;
      ended = true;
      this.#stopWatch = undefined;
      if (this.#stopped) return;
      const status = (err as { statusCode?: number; code?: number } | undefined)?.statusCode ?? (err as { code?: number } | undefined)?.code;
      if (gone || status === 410) {
        void this.#relist();
      } else if (err && (!connected || !isTimeout(err))) {
        // Could not connect (or the connection broke): the cache no longer follows the cluster.
        this.#fail(err, () => void this.#watch());
      } else {
        // The server closed the watch (timeoutSeconds) or an established one idled out: resume where we were.
        void this.#watch();
      }
    };
    try {
      const stop = await this.#source.watch(this.#rv, onEvent, onDone);
      if (ended || this.#stopped) {
        stop();
        return;
      }
      connected = true;
      this.#stopWatch = stop;
      this.#setHealthy();
    } catch (e) {
      onDone(e);
    }
  }

  #keep(o: T): boolean {
    return this.#opts.filter ? this.#opts.filter(o) : true;
  }

  #emit(c: Change<T>): void {
    for (const fn of [...this.#listeners]) {
      try {
        fn(c);
      } catch (e) {
        this.#opts.logger.error("informer listener failed", { informer: this.name, err: e });
      }
    }
  }

  #setHealthy(): void {
    this.#healthy = true;
    this.#delay = 0;
    this.#lastError = undefined;
    for (const w of [...this.#syncWaiters]) w();
  }

  #fail(e: unknown, retry: () => void): void {
    if (this.#healthy) this.#opts.logger.warn("lost the cluster", { informer: this.name, err: errorText(e) });
    this.#healthy = false;
    this.#lastError = e;
    const { firstMs, maxMs } = this.#opts.backoff ?? { firstMs: 200, maxMs: 5000 };
    this.#delay = this.#delay ? Math.min(maxMs, this.#delay * 2) : firstMs;
    this.#timer = this.#opts.clock.setTimeout(() => {
      this.#timer = undefined;
      retry();
    }, this.#delay);
  }
}

function isTimeout(e: unknown): boolean {
  const name = (e as { name?: string })?.name;
  return name === "TimeoutError";
}

function errorText(e: unknown): string | undefined {
  if (e === undefined) return undefined;
  return e instanceof Error ? e.message : String(e);
}
