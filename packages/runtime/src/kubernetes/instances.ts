/**
 * From pods and EndpointSlices to Berth's `Instance`s, and from pod status to the
 * reasons a release did not boot. Pure functions over object shapes.
 *
 * A web instance is "up" only when an EndpointSlice lists its pod as ready: that is
 * the address the router gets, the same one a Service would send traffic to.
 */
import type { Instance, InstanceState } from "../port.ts";
import { toMs, type ContainerState, type ContainerStatus, type EndpointSlice, type KubeEvent, type Pod } from "./kube.ts";
import { A_PROCESS_TYPE, APP_CONTAINER, APP_PORT, DYNO_GATE, L_APP, L_DYNO, L_PROCESS, L_RELEASE, L_ROLE, L_SIZE, dynoIndex } from "./names.ts";

export interface Address {
  host: string;
  port: number;
}

/** "namespace/pod" → address, for endpoints that are ready. */
export function readyAddresses(slices: Iterable<EndpointSlice>): Map<string, Address> {
  const out = new Map<string, Address>();
  for (const s of slices) {
    const port = s.ports?.find((p) => p.name === "web")?.port ?? s.ports?.[0]?.port ?? APP_PORT;
    for (const e of s.endpoints ?? []) {
      // `ready` is false for terminating endpoints; absent means ready (the API's rule).
      if (e.conditions?.ready === false || e.conditions?.terminating) continue;
      const host = e.addresses[0];
      if (!host || e.targetRef?.kind !== "Pod" || !e.targetRef.name) continue;
      out.set(`${e.targetRef.namespace ?? s.metadata.namespace}/${e.targetRef.name}`, { host, port });
    }
  }
  return out;
}

export function appContainer(pod: Pod): ContainerStatus | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === APP_CONTAINER);
}

export function processType(pod: Pod): string {
  return pod.metadata.annotations?.[A_PROCESS_TYPE] ?? pod.metadata.labels?.[L_PROCESS] ?? "web";
}

export function isGated(pod: Pod): boolean {
  return (pod.spec?.schedulingGates ?? []).some((g) => g.name === DYNO_GATE);
}

/** Waiting reasons that no retry fixes: the release fails at once. */
const HOPELESS = new Set(["InvalidImageName", "ErrImageNeverPull"]);
/**
 * Waiting reasons the kubelet retries (a registry blip, a Secret its cache has not
 * synced yet): they fail a release only if still there at the boot deadline.
 */
const TROUBLED = new Set(["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"]);

/** `lastExit` as the local runtime words it. */
export function describeTermination(t: NonNullable<ContainerState["terminated"]>): string {
  if (t.reason === "OOMKilled") return "out of memory";
  const sig = t.exitCode > 128 ? SIGNALS[t.exitCode - 128] : undefined;
  if (sig) return `killed by ${sig}`;
  return `exited ${t.exitCode}`;
}

const SIGNALS: Record<number, string> = { 1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM" };

/**
 * Where the router reaches the pod: its EndpointSlice entry; else, while the slice
 * lags, the pod's own Ready condition and IP. The pod and EndpointSlice watches are
 * not ordered with each other: a new pod's readiness and the deletion of the old one
 * arrive in order on the pod watch, but the slice may come after both, and without
 * this a rollout would show no instance up for a moment.
 */
export function addressOf(pod: Pod, addresses: Map<string, Address>): Address | undefined {
  const fromSlice = addresses.get(`${pod.metadata.namespace}/${pod.metadata.name}`);
  if (fromSlice) return fromSlice;
  const ready = pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  return ready && pod.status?.podIP && !pod.metadata.deletionTimestamp ? { host: pod.status.podIP, port: APP_PORT } : undefined;
}

/** The pod as an Instance; undefined while it has no dyno name yet (gated, a few ms after creation). */
export function instanceOf(pod: Pod, addresses: Map<string, Address>): Instance | undefined {
  const name = pod.metadata.labels?.[L_DYNO];
  const appId = pod.metadata.labels?.[L_APP];
  if (!name || !appId) return undefined;
  const type = processType(pod);
  const c = appContainer(pod);
  const oneOff = pod.metadata.labels?.[L_ROLE] === "one-off";
  // Only web dynos are routed to.
  const address = type === "web" && !oneOff ? addressOf(pod, addresses) : undefined;
  const last = c?.state?.terminated ?? c?.lastState?.terminated;
  let state: InstanceState;
  if (pod.metadata.deletionTimestamp) state = "stopping";
  else if (c?.state?.terminated) state = oneOff && c.state.terminated.exitCode === 0 ? "down" : "crashed";
  else if (c?.state?.waiting?.reason === "CrashLoopBackOff" || HOPELESS.has(c?.state?.waiting?.reason ?? "")) state = "crashed";
  else if (c?.state?.running) state = type === "web" && !oneOff ? (address ? "up" : "starting") : "up";
  else if (pod.status?.phase === "Failed" || pod.status?.phase === "Succeeded") state = "down";
  else state = "starting";
  const w = c?.state?.waiting?.reason;
  const waitingFailure = w && (HOPELESS.has(w) || TROUBLED.has(w)) ? w : undefined;
  const lastExit = last ? describeTermination(last) : waitingFailure;
  return {
    name,
    appId,
    type,
    release: Number(pod.metadata.labels?.[L_RELEASE] ?? 0),
    state,
    ...(state === "up" && address ? { address } : {}),
    startedAt: new Date(toMs(c?.state?.running?.startedAt) ?? toMs(pod.metadata.creationTimestamp) ?? 0),
    restarts: c?.restartCount ?? 0,
    ...(lastExit ? { lastExit } : {}),
    size: pod.metadata.labels?.[L_SIZE] ?? "",
  };
}

/** Sorted as `ps` shows them: by type, then dyno number, newest release first. */
export function sortInstances(list: Instance[]): Instance[] {
  return list.sort((a, b) => a.type.localeCompare(b.type) || (dynoIndex(a.name) ?? 0) - (dynoIndex(b.name) ?? 0) || b.release - a.release);
}

/**
 * Why a new pod will not become ready, as soon as that is certain (the process
 * exited, ran out of memory, its image cannot be pulled…); undefined while it may
 * still come up. Wording follows the local runtime's BootFailed reasons.
 */
export function certainFailure(pod: Pod): string | undefined {
  const c = appContainer(pod);
  if (!c) return undefined;
  const term = c.state?.terminated ?? c.lastState?.terminated;
  if (term) return term.reason === "OOMKilled" ? "killed: out of memory" : terminationReason(term.exitCode);
  const w = c.state?.waiting;
  if (w?.reason && HOPELESS.has(w.reason)) return waitingText(w);
  return undefined;
}

function waitingText(w: { reason?: string; message?: string }): string {
  const what = w.reason === "ErrImagePull" || w.reason === "ImagePullBackOff" || w.reason === "InvalidImageName" || w.reason === "ErrImageNeverPull" ? "image could not be pulled" : "container could not be created";
  return `${what} (${w.reason}${w.message ? `: ${w.message.slice(0, 300)}` : ""})`;
}

function terminationReason(code: number): string {
  const sig = code > 128 ? SIGNALS[code - 128] : undefined;
  return sig ? `killed by ${sig}` : `exited with code ${code}`;
}

/**
 * Why a pod that was given `bootMs` did not become ready: from its status, its
 * ReplicaSet's complaint (quota) and the kubelet's probe events.
 */
export function timeoutReason(pod: Pod | undefined, bootMs: number, opts: { healthCheckPath?: string | undefined; events: KubeEvent[]; replicaFailure?: string | undefined; web: boolean }): string {
  const within = `within ${seconds(bootMs)}`;
  if (!pod) return opts.replicaFailure ? `no instance could be created ${within}: ${opts.replicaFailure}` : `no instance was created ${within}`;
  const certain = certainFailure(pod);
  if (certain) return certain;
  const waiting = appContainer(pod)?.state?.waiting;
  if (waiting?.reason && TROUBLED.has(waiting.reason)) return `${waitingText(waiting)} ${within}`;
  const unschedulable = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable");
  if (unschedulable) return `could not be scheduled ${within}: ${unschedulable.message ?? "no node fits"}`;
  const c = appContainer(pod);
  if (!opts.web) return c?.state?.running ? `did not start ${within}` : `did not start ${within} (${c?.state?.waiting?.reason ?? pod.status?.phase ?? "pending"})`;
  const failures = [...opts.events].reverse().filter((e) => e.reason === "Unhealthy" && /Readiness probe failed/.test(e.message ?? ""));
  // An answer with a status code says more than the "connection refused" of an app still starting.
  const probe = failures.find((e) => /statuscode: [0-9]+/.test(e.message ?? "")) ?? failures[0];
  if (opts.healthCheckPath && probe) {
    const status = /statuscode: ([0-9]+)/.exec(probe.message ?? "");
    if (status) return `health check GET ${opts.healthCheckPath} answered ${status[1]} ${within}`;
    if (/connection refused|no route to host/.test(probe.message ?? "")) return `did not listen on PORT ${within}`;
    return `health check GET ${opts.healthCheckPath} failed ${within}: ${probe.message?.replace(/^Readiness probe failed: /, "").slice(0, 200)}`;
  }
  if (c?.state?.running) {
    if (opts.healthCheckPath) return `health check GET ${opts.healthCheckPath} did not pass ${within}`;
    return `did not listen on PORT ${within}`;
  }
  return `did not listen on PORT ${within} (not started yet: ${c?.state?.waiting?.reason ?? (isGated(pod) ? "waiting for its dyno name" : (pod.status?.phase ?? "pending"))})`;
}

export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1))}s`;
}
