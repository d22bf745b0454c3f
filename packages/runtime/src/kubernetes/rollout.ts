/**
 * apply(), start-first on Deployments:
 *
 * 1. the team namespace (namespaces.ts), the run image (image.ts) and the release's
 *    config Secret exist;
 * 2. every process type's Deployment is server-side applied (RollingUpdate with
 *    maxSurge 1, maxUnavailable 0: the controller stops an old pod only once a new one
 *    is ready), and the web Service;
 * 3. boot: wait until `quantity` pods of the new template (label berth.dev/spec) are up
 *    per type, within bootTimeoutMs; a pod that exits, runs out of memory or cannot
 *    pull its image fails the release at once;
 * 4. on failure, roll back: re-apply each Deployment's previous template (or delete the
 *    Deployments that are new), wait for the new pods to go, throw BootFailed: the old
 *    pods were never stopped, so the old release kept serving throughout;
 * 5. drain: wait for the old pods to be gone, delete what the new release no longer
 *    has (process types, the Service, older config Secrets).
 */
import type { Logger } from "@berth/core";
import { BootFailed, type DesiredApp } from "../port.ts";
import type { Deployment, Kube, KubeEvent, KubeObject, Pod, ReplicaSet } from "./kube.ts";
import type { RunImages } from "./image.ts";
import { certainFailure, instanceOf, timeoutReason, type Address } from "./instances.ts";
import type { Teams } from "./namespaces.ts";
import { FIELD_MANAGER, L_APP, L_PROCESS, L_ROLE, L_SPEC, appSelector, processLabel, serviceName } from "./names.ts";
import { deployment, envSecret, webService, type WorkloadInput } from "./workloads.ts";

/** What the rollout reads from the runtime's caches. */
export interface ClusterView {
  /** Pods of the app (dynos and one-offs) as the pod informer has them. */
  pods(appId: string): Pod[];
  addresses(): Map<string, Address>;
  /** Resolves with the first defined value of `probe` (re-run on every cache change), or undefined after `timeoutMs`. */
  waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T | undefined>;
}

export interface RolloutDeps {
  kube: Kube;
  teams: Teams;
  images: RunImages;
  runtimeClassByPlan: Record<string, string>;
  view: ClusterView;
  logger: Logger;
  /** The app's namespace became known (scale/remove find it without a lookup). */
  remember(appId: string, namespace: string): void;
}

/** Namespace, run image and config Secret: what any process of the release needs. */
export async function prepare(deps: RolloutDeps, desired: DesiredApp): Promise<WorkloadInput> {
  const { namespace, plan } = await deps.teams.ensure(desired.teamId);
  deps.remember(desired.appId, namespace);
  const image = await deps.images.resolve(desired.image);
  const secret = envSecret(namespace, desired);
  await deps.kube.apply(secret, FIELD_MANAGER);
  const runtimeClassName = deps.runtimeClassByPlan[plan.name];
  return { namespace, desired, image, secretName: secret.metadata.name, runtimeClassName };
}

const DRAIN_EXTRA_MS = 30_000;

export async function rollOut(deps: RolloutDeps, desired: DesiredApp): Promise<void> {
  const { kube, view } = deps;
  const input = await prepare(deps, desired);
  const { namespace } = input;
  const existing = await kube.list<Deployment>({ apiVersion: "apps/v1", kind: "Deployment", namespace, labelSelector: appSelector(desired.appId) });
  const previous = new Map(existing.items.map((d) => [d.metadata.name, d]));
  const targets = desired.processes.map((p) => ({ proc: p, obj: deployment(input, p) }));
  const hasWeb = desired.processes.some((p) => p.type === "web");
  const hadService = hasWeb ? (await kube.read({ apiVersion: "v1", kind: "Service", name: serviceName(desired.appId), namespace })) !== undefined : true;

  if (hasWeb) await kube.apply(webService(namespace, desired), FIELD_MANAGER);
  for (const t of targets) await kube.apply(t.obj, FIELD_MANAGER);

  const specOf = (o: KubeObject) => ((o as Deployment).spec?.template?.metadata?.labels ?? {})[L_SPEC];
  const wanted = new Map(targets.map((t) => [processLabel(t.proc.type), { spec: specOf(t.obj)!, quantity: t.proc.quantity, type: t.proc.type }]));
  const dynos = () => view.pods(desired.appId).filter((p) => p.metadata.labels?.[L_ROLE] === "dyno");

  // 3. boot
  const booted = await view.waitFor<{ ok: true } | { ok: false; reason: string }>(() => {
    const addresses = view.addresses();
    let all = true;
    for (const [label, w] of wanted) {
      const fresh = dynos().filter((p) => p.metadata.labels?.[L_PROCESS] === label && p.metadata.labels?.[L_SPEC] === w.spec && !p.metadata.deletionTimestamp);
      for (const p of fresh) {
        const failed = certainFailure(p);
        if (failed) return { ok: false, reason: failed };
      }
      const up = fresh.filter((p) => instanceOf(p, addresses)?.state === "up").length;
      if (up < w.quantity) all = false;
    }
    return all ? { ok: true } : undefined;
  }, desired.bootTimeoutMs);

  if (!booted || !booted.ok) {
    const reason = booted ? booted.reason : await whyNotReady(deps, desired, namespace, wanted, dynos);
    await rollBack(deps, desired, namespace, targets.map((t) => t.obj as Deployment), previous, hasWeb && !hadService, input.secretName);
    throw new BootFailed(reason);
  }

  // 5. drain and clean up
  for (const name of previous.keys()) {
    if (!targets.some((t) => t.obj.metadata.name === name)) await kube.delete({ apiVersion: "apps/v1", kind: "Deployment", name, namespace }, { propagationPolicy: "Background" });
  }
  if (!hasWeb) await kube.delete({ apiVersion: "v1", kind: "Service", name: serviceName(desired.appId), namespace });
  const drained = await view.waitFor(() => {
    const stale = dynos().filter((p) => {
      const w = wanted.get(p.metadata.labels?.[L_PROCESS] ?? "");
      return !w || p.metadata.labels?.[L_SPEC] !== w.spec || p.metadata.deletionTimestamp;
    });
    return stale.length === 0 ? true : undefined;
  }, desired.graceMs + DRAIN_EXTRA_MS);
  if (!drained) deps.logger.warn("old instances still stopping after the grace period", { app: desired.appId, release: desired.release });
  await deleteOtherSecrets(kube, namespace, desired.appId, input.secretName);
}

/** At the deadline: the most telling reason among the new pods that are not up. */
async function whyNotReady(
  deps: RolloutDeps,
  desired: DesiredApp,
  namespace: string,
  wanted: Map<string, { spec: string; quantity: number; type: string }>,
  dynos: () => Pod[],
): Promise<string> {
  const addresses = deps.view.addresses();
  for (const [label, w] of wanted) {
    const fresh = dynos().filter((p) => p.metadata.labels?.[L_PROCESS] === label && p.metadata.labels?.[L_SPEC] === w.spec && !p.metadata.deletionTimestamp);
    const notUp = fresh.find((p) => instanceOf(p, addresses)?.state !== "up");
    if (fresh.length >= w.quantity && !notUp) continue;
    const web = w.type === "web";
    if (!notUp) {
      const rsFailure = await replicaFailure(deps.kube, namespace, desired.appId, label);
      return timeoutReason(undefined, desired.bootTimeoutMs, { events: [], replicaFailure: rsFailure, web });
    }
    // A probe verdict may be a moment away (probes run every second): give the kubelet that moment
    // to say what the health check answered, so the reason names it.
    let events = await podEvents(deps.kube, namespace, notUp.metadata.name);
    if (web && !hasProbeVerdict(events, desired.healthCheckPath)) {
      const until = Date.now() + 3000;
      while (Date.now() < until && !hasProbeVerdict(events, desired.healthCheckPath) && !certainFailure(latest(deps, desired.appId, notUp) ?? notUp)) {
        await new Promise((r) => setTimeout(r, 250));
        events = await podEvents(deps.kube, namespace, notUp.metadata.name);
      }
    }
    return timeoutReason(latest(deps, desired.appId, notUp) ?? notUp, desired.bootTimeoutMs, { healthCheckPath: desired.healthCheckPath, events, web });
  }
  return `did not become ready within ${desired.bootTimeoutMs} ms`;
}

function latest(deps: RolloutDeps, appId: string, pod: Pod): Pod | undefined {
  return deps.view.pods(appId).find((p) => p.metadata.uid === pod.metadata.uid);
}

/** The kubelet said why the probe fails: for a health check, with the status the app answered. */
function hasProbeVerdict(events: KubeEvent[], healthCheckPath: string | undefined): boolean {
  return events.some((e) => e.reason === "Unhealthy" && (!healthCheckPath || /statuscode: [0-9]+/.test(e.message ?? "")));
}

async function podEvents(kube: Kube, namespace: string, pod: string): Promise<KubeEvent[]> {
  try {
    const r = await kube.list<KubeEvent>({ apiVersion: "v1", kind: "Event", namespace, fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${pod}` });
    return r.items;
  } catch {
    return [];
  }
}

/** A ReplicaSet that cannot create pods says why (exceeded quota, forbidden by admission). */
async function replicaFailure(kube: Kube, namespace: string, appId: string, processLabelValue: string): Promise<string | undefined> {
  try {
    const r = await kube.list<ReplicaSet>({ apiVersion: "apps/v1", kind: "ReplicaSet", namespace, labelSelector: `${L_APP}=${appId},${L_PROCESS}=${processLabelValue}` });
    for (const rs of r.items) {
      const c = rs.status?.conditions?.find((x) => x.type === "ReplicaFailure" && x.status === "True");
      if (c) return c.message ?? c.reason;
    }
  } catch {
    // The reason is a nicety; the failure stands without it.
  }
  return undefined;
}

async function rollBack(
  deps: RolloutDeps,
  desired: DesiredApp,
  namespace: string,
  applied: Deployment[],
  previous: Map<string, Deployment>,
  serviceIsNew: boolean,
  secretName: string,
): Promise<void> {
  const { kube, view } = deps;
  const newSpecs = new Set(applied.map((d) => d.spec?.template?.metadata?.labels?.[L_SPEC]));
  const keepSecrets = new Set<string>();
  for (const d of applied) {
    const prev = previous.get(d.metadata.name);
    if (prev?.spec?.template) {
      // The previous template as the cluster has it: its ReplicaSet matches it, so the
      // controller scales the new ReplicaSet to zero and leaves the old one as it is.
      await kube.apply({ ...d, spec: { ...d.spec, replicas: prev.spec.replicas ?? d.spec?.replicas, template: prev.spec.template } } as Deployment, FIELD_MANAGER);
      for (const s of secretsOf(prev)) keepSecrets.add(s);
    } else {
      await kube.delete({ apiVersion: "apps/v1", kind: "Deployment", name: d.metadata.name, namespace }, { propagationPolicy: "Background" });
    }
  }
  if (serviceIsNew) await kube.delete({ apiVersion: "v1", kind: "Service", name: serviceName(desired.appId), namespace });
  const gone = await view.waitFor(
    () => (view.pods(desired.appId).some((p) => p.metadata.labels?.[L_ROLE] === "dyno" && newSpecs.has(p.metadata.labels?.[L_SPEC])) ? undefined : true),
    desired.graceMs + DRAIN_EXTRA_MS,
  );
  if (!gone) deps.logger.warn("pods of a failed release still stopping", { app: desired.appId, release: desired.release });
  if (!keepSecrets.has(secretName)) {
    await kube.delete({ apiVersion: "v1", kind: "Secret", name: secretName, namespace });
  }
}

function secretsOf(d: Deployment): string[] {
  const spec = d.spec?.template?.spec as { containers?: { envFrom?: { secretRef?: { name?: string } }[] }[] } | undefined;
  return (spec?.containers ?? []).flatMap((c) => (c.envFrom ?? []).map((e) => e.secretRef?.name ?? "")).filter(Boolean);
}

/** Config Secrets of the app other than the current one (older releases). */
async function deleteOtherSecrets(kube: Kube, namespace: string, appId: string, keep: string): Promise<void> {
  const all = await kube.list({ apiVersion: "v1", kind: "Secret", namespace, labelSelector: appSelector(appId) });
  for (const s of all.items) if (s.metadata.name !== keep) await kube.delete({ apiVersion: "v1", kind: "Secret", name: s.metadata.name, namespace });
}
