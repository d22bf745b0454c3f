/**
 * Dyno names for pods of Deployments.
 *
 * Heroku tells each process who it is (DYNO=web.2), but a Deployment's pods are
 * interchangeable and have random names. So every dyno pod is created with the
 * scheduling gate `berth.dev/dyno`: it waits, unscheduled, until the runtime gives it
 * the lowest number free among the pods of its rollout (same app, type and template)
 * and lifts the gate, both in one JSON patch guarded by the pod's resourceVersion.
 * The container reads DYNO from that label (downward API), which the kubelet resolves
 * when it starts the container: after the patch, since the pod was unscheduled until then.
 *
 * The cost: a pod waits for this runtime (one API round trip, a few ms); while no
 * runtime runs, new pods wait (running ones, and container restarts, do not).
 */
import type { Logger } from "@berth/core";
import { isKubeError, type Kube, type Pod } from "./kube.ts";
import { isGated } from "./instances.ts";
import { DYNO_GATE, L_APP, L_DYNO, L_PROCESS, L_SPEC, dynoIndex } from "./names.ts";

/** The group a dyno number is unique within. */
function group(p: Pod): string {
  const l = p.metadata.labels ?? {};
  return `${p.metadata.namespace}/${l[L_APP]}/${l[L_PROCESS]}/${l[L_SPEC]}`;
}

export class DynoNamer {
  readonly #kube: Kube;
  readonly #logger: Logger;
  readonly #pods: () => Iterable<Pod>;
  /** Numbers handed out whose pods the cache has not shown labelled yet: group → pod uid → number. */
  readonly #pending = new Map<string, Map<string, number>>();
  readonly #inFlight = new Set<string>();

  constructor(kube: Kube, pods: () => Iterable<Pod>, logger: Logger) {
    this.#kube = kube;
    this.#pods = pods;
    this.#logger = logger;
  }

  /** Called for every pod the informer sees change. */
  seen(pod: Pod): void {
    const uid = pod.metadata.uid ?? pod.metadata.name;
    const g = group(pod);
    if (pod.metadata.labels?.[L_DYNO] || pod.metadata.deletionTimestamp) {
      this.#pending.get(g)?.delete(uid);
      return;
    }
    if (!isGated(pod) || this.#inFlight.has(uid)) return;
    void this.#name(pod, g, uid);
  }

  /** The number a new pod of group `g` gets: the lowest not held by a live pod of its rollout. */
  next(g: string): number {
    const used = new Set<number>();
    for (const p of this.#pods()) {
      if (group(p) !== g || p.metadata.deletionTimestamp) continue;
      const n = dynoIndex(p.metadata.labels?.[L_DYNO]);
      if (n !== undefined) used.add(n);
    }
    for (const n of this.#pending.get(g)?.values() ?? []) used.add(n);
    let n = 1;
    while (used.has(n)) n++;
    return n;
  }

  async #name(pod: Pod, g: string, uid: string): Promise<void> {
    const type = pod.metadata.annotations?.["berth.dev/process-type"] ?? pod.metadata.labels?.[L_PROCESS] ?? "web";
    const n = this.next(g);
    const pending = this.#pending.get(g) ?? new Map<string, number>();
    this.#pending.set(g, pending);
    pending.set(uid, n);
    this.#inFlight.add(uid);
    const gates = (pod.spec?.schedulingGates ?? []).filter((x) => x.name !== DYNO_GATE);
    try {
      await this.#kube.patchPod(pod.metadata.namespace!, pod.metadata.name, [
        { op: "test", path: "/metadata/resourceVersion", value: pod.metadata.resourceVersion },
        { op: "add", path: `/metadata/labels/${L_DYNO.replace("/", "~1")}`, value: `${type}.${n}` },
        gates.length ? { op: "replace", path: "/spec/schedulingGates", value: gates } : { op: "remove", path: "/spec/schedulingGates" },
      ]);
      this.#inFlight.delete(uid);
    } catch (e) {
      pending.delete(uid);
      this.#inFlight.delete(uid);
      if (isKubeError(e, 404)) return;
      // 409/422: the pod changed meanwhile (the resourceVersion test failed). Try again with
      // the newest version the cache has; an event that arrived while in flight was skipped.
      const conflict = isKubeError(e, 409) || isKubeError(e, 422);
      if (!conflict) this.#logger.warn("could not name a dyno pod", { pod: pod.metadata.name, err: (e as Error).message });
      setTimeout(() => {
        const latest = [...this.#pods()].find((p) => (p.metadata.uid ?? p.metadata.name) === uid);
        if (latest) this.seen(latest);
      }, conflict ? 20 : 1000).unref();
    }
  }
}
