import type { InstanceRoute } from "./routes.ts";

export function instanceKey(i: { host: string; port: number }): string {
  return `${i.host}:${i.port}`;
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

  /** Count one request against the instance; call the returned function (once) when it ends. */
  acquire(inst: { host: string; port: number }): () => void {
    const key = instanceKey(inst);
    this.#outstanding.set(key, (this.#outstanding.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#outstanding.get(key) ?? 1) - 1;
      if (left <= 0) this.#outstanding.delete(key);
      else this.#outstanding.set(key, left);
    };
  }

  outstanding(inst: { host: string; port: number }): number {
    return this.#outstanding.get(instanceKey(inst)) ?? 0;
  }
}
