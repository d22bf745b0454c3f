import type { InstanceRoute } from "./routes.ts";

/** Keys of the route table's instance objects: a string built per request would be hashed anew per map lookup. */
const keys = new WeakMap<object, string>();

/** The address key an instance is counted (and pooled) under. */
export function instanceKey(i: { host: string; port: number }): string {
  let k = keys.get(i);
  if (k === undefined) keys.set(i, (k = `${i.host}:${i.port}`));
  return k;
}

/**
 * Least-outstanding-requests choice over an app's ready instances. Counts are keyed
 * by address, not by route object, so a route update never loses track of requests
 * already in flight to an instance that stays.
 */
export class Balancer {
  #outstanding = new Map<string, number>();
  #rotation = new Map<string, number>();

  /** The ready instance with the fewest requests in flight, ties broken round-robin. */
  pick(appId: string, instances: readonly InstanceRoute[], exclude?: ReadonlySet<string>): InstanceRoute | undefined {
    const n = instances.length;
    if (n === 0) return undefined;
    if (n === 1) {
      const only = instances[0]!;
      return exclude?.has(instanceKey(only)) ? undefined : only;
    }
    const start = (this.#rotation.get(appId) ?? 0) % n;
    this.#rotation.set(appId, start + 1);
    let best: InstanceRoute | undefined;
    let bestLoad = Infinity;
    for (let k = 0; k < n; k++) {
      const inst = instances[(start + k) % n]!;
      const key = instanceKey(inst);
      if (exclude?.has(key)) continue;
      const load = this.#outstanding.get(key) ?? 0;
      if (load < bestLoad) {
        best = inst;
        bestLoad = load;
      }
    }
    return best;
  }

  /** Count one request against the instance at `key` (instanceKey); `finish` it exactly once. */
  start(key: string): void {
    this.#outstanding.set(key, (this.#outstanding.get(key) ?? 0) + 1);
  }

  finish(key: string): void {
    const left = (this.#outstanding.get(key) ?? 1) - 1;
    if (left <= 0) this.#outstanding.delete(key);
    else this.#outstanding.set(key, left);
  }

  outstanding(inst: { host: string; port: number }): number {
    return this.#outstanding.get(instanceKey(inst)) ?? 0;
  }
}
