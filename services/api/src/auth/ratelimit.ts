import type { Clock } from "@berth/core";

/**
 * Counts events per key in a fixed window; in memory, per API process. Used for
 * failed logins (per account and per address). A multi-process deployment would
 * move this to the database; one process is the embedded default.
 */
export class WindowCounter {
  #counts = new Map<string, { start: number; n: number }>();
  readonly limit: number;
  readonly windowMs: number;
  readonly #clock: Clock;
  constructor(clock: Clock, limit: number, windowMs: number) {
    this.#clock = clock;
    this.limit = limit;
    this.windowMs = windowMs;
  }
  #entry(key: string) {
    const now = this.#clock.now();
    let e = this.#counts.get(key);
    if (!e || now - e.start >= this.windowMs) {
      e = { start: now, n: 0 };
      this.#counts.set(key, e);
    }
    if (this.#counts.size > 100_000) this.#sweep(now);
    return e;
  }
  #sweep(now: number) {
    for (const [k, e] of this.#counts) if (now - e.start >= this.windowMs) this.#counts.delete(k);
  }
  blocked(key: string): boolean {
    return this.#entry(key).n >= this.limit;
  }
  hit(key: string): number {
    const e = this.#entry(key);
    e.n++;
    return Math.max(0, this.limit - e.n);
  }
  remaining(key: string): number {
    return Math.max(0, this.limit - this.#entry(key).n);
  }
  reset(key: string): void {
    this.#counts.delete(key);
  }
}
