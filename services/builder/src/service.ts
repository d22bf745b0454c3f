import type { Logger } from "@berth/core";
import { runBuild, type BuilderDeps } from "./worker.ts";

/**
 * The builder process's loop: up to `concurrency` builds at once, woken by
 * build.queued events (and a slow poll), plus the reaper that recovers builds of
 * builders that died.
 */
export class BuilderService {
  readonly #deps: BuilderDeps;
  readonly #concurrency: number;
  readonly #logger: Logger;
  #running = 0;
  #stopped = false;
  #timers: NodeJS.Timeout[] = [];
  #inflight = new Set<Promise<unknown>>();
  #off: (() => void) | undefined;

  constructor(deps: BuilderDeps, opts: { concurrency: number; pollMs: number; reapEveryMs: number; staleMs: number; maxAttempts: number }) {
    this.#deps = deps;
    this.#concurrency = opts.concurrency;
    this.#logger = deps.logger;
    this.#off = deps.events.subscribe((e) => {
      if (e.kind === "build.queued") this.#fill();
    });
    this.#timers.push(setInterval(() => this.#fill(), opts.pollMs));
    this.#timers.push(
      setInterval(() => {
        void this.#reap(opts.staleMs, opts.maxAttempts);
      }, opts.reapEveryMs),
    );
    this.#fill();
  }

  async #reap(staleMs: number, maxAttempts: number) {
    try {
      const { retried, failed } = await this.#deps.queue.reap(staleMs, maxAttempts);
      for (const id of retried) this.#logger.warn("build retried after its builder stopped", { build: id });
      for (const f of failed) await this.#deps.events.publish({ kind: "build.finished", buildId: f.id, appId: f.app_id, status: "failed" });
      for (const id of await this.#deps.queue.failCancelledUnclaimed()) await this.#deps.events.publish({ kind: "build.finished", buildId: id, appId: "", status: "failed" });
      if (retried.length) this.#fill();
    } catch (err) {
      this.#logger.warn("reaper failed", { err });
    }
  }

  #fill(): void {
    while (!this.#stopped && this.#running < this.#concurrency) {
      this.#running++;
      const p = this.#next().finally(() => {
        this.#running--;
        this.#inflight.delete(p);
      });
      this.#inflight.add(p);
    }
  }

  /** Claims and runs builds until the queue is empty. */
  async #next(): Promise<void> {
    while (!this.#stopped) {
      let claimed;
      try {
        claimed = await this.#deps.queue.claim();
      } catch (err) {
        this.#logger.warn("claiming a build failed", { err });
        return;
      }
      if (!claimed) return;
      this.#logger.info("build started", { build: claimed.id, app: claimed.app_id });
      const status = await runBuild(this.#deps, claimed.id).catch((err: unknown) => {
        this.#logger.error("build crashed", { build: claimed.id, err });
        return "failed";
      });
      this.#logger.info("build finished", { build: claimed.id, status });
    }
  }

  /** Stops taking builds and waits for the running ones. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#off?.();
    for (const t of this.#timers) clearInterval(t);
    await Promise.allSettled([...this.#inflight]);
  }
}
