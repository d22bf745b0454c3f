/**
 * The Kubernetes runtime: Berth's apps on a shared cluster, one namespace per team.
 * packages/runtime/README.md ("The Kubernetes runtime") describes the mapping; the
 * pieces live beside this file, one concern each:
 *
 *   kube.ts / client.ts   the API slice and its client-node implementation
 *   namespaces.ts         team namespace, Pod Security, NetworkPolicy, quota, limits
 *   image.ts              run images: the base image's layers under the app's
 *   workloads.ts          Secret, Deployments, Service, one-off pods (pure)
 *   rollout.ts            start-first apply with rollback
 *   informer.ts           list + watch caches (resourceVersion resume, 410 relist)
 *   instances.ts          pods + EndpointSlices → Instances, boot failure reasons
 *   dynos.ts              dyno names (web.1) through scheduling gates
 *   logs.ts               pod log API → log events
 *
 * Reads (list, waits) come from the informers' caches; writes go to the API server.
 * A cache that cannot follow the cluster makes reads throw Unavailable and ready()
 * answer false: an unreachable API server never looks like an empty cluster.
 */
import { randomBytes } from "node:crypto";
import { NotFound, Unavailable, type Clock, type Logger } from "@berth/core";
import type { KubeConfig } from "@kubernetes/client-node";
import { BootFailed, DYNO_SIZES, type DesiredApp, type Instance, type Runtime, type RuntimeEvent } from "../port.ts";
import { kubeFromConfig } from "./client.ts";
import { DynoNamer } from "./dynos.ts";
import { RunImages, type FetchLike, type RegistryOptions } from "./image.ts";
import { Informer, key, type InformerSource } from "./informer.ts";
import { appContainer, certainFailure, instanceOf, readyAddresses, sortInstances, type Address } from "./instances.ts";
import { isKubeError, type Deployment, type EndpointSlice, type Kube, type KubeObject, type Pod } from "./kube.ts";
import { LogFollower, readLog } from "./logs.ts";
import { DEFAULT_PLAN, PRIVATE_RANGES, Teams, type TeamPlan } from "./namespaces.ts";
import {
  A_RESTARTED_AT,
  FIELD_MANAGER,
  L_APP,
  L_DYNO,
  L_PROCESS,
  L_ROLE,
  MANAGED_SELECTOR,
  RESTART_FIELD_MANAGER,
  appSelector,
  appSlug,
  deploymentName,
  processLabel,
} from "./names.ts";
import { prepare, rollOut, type ClusterView, type RolloutDeps } from "./rollout.ts";
import { oneOffPod } from "./workloads.ts";

export type { TeamPlan } from "./namespaces.ts";
export { DEFAULT_PLAN } from "./namespaces.ts";
export type { Kube } from "./kube.ts";
export { kubeFromConfig } from "./client.ts";

export interface KubernetesRuntimeOptions {
  /** A kubeconfig file, a loaded KubeConfig, or a ready `Kube` (tests pass fakes). */
  kubeconfig?: string | KubeConfig;
  kube?: Kube;
  /** Team namespaces are `<prefix><teamId>`. Default "berth-team-". */
  namespacePrefix?: string;
  /** Where the router runs: the only namespace allowed to reach app pods. */
  routerNamespace: string;
  /** Labels of the router's pods there. Default { "app.kubernetes.io/component": "router" }. */
  routerPodLabels?: Record<string, string>;
  /** The registry app images are in; run images are written there too. */
  registry: RegistryOptions;
  /** The image that gives apps an OS (sh, libc, node), e.g. 127.0.0.1:5100/berth/base:local. */
  baseImage: string;
  clock: Clock;
  logger: Logger;
  /** The team's plan (quota, limits). Default DEFAULT_PLAN for every team. */
  plan?: (teamId: string) => TeamPlan | Promise<TeamPlan>;
  /** runtimeClassName per plan name, e.g. { untrusted: "gvisor" }. */
  runtimeClassByPlan?: Record<string, string>;
  /** Ranges tenants may not reach (egress). Default PRIVATE_RANGES. */
  privateRanges?: string[];
  /** How long scale() and restart() wait for instances to come up or go. Default 60 s. */
  scaleTimeoutMs?: number;
  /** How long reads wait for the caches to follow the cluster before throwing Unavailable. Default 5 s. */
  syncTimeoutMs?: number;
  /** fetch for the registry (tests). */
  fetch?: FetchLike;
}

export interface KubernetesRuntime extends Runtime {
  /** The API server answers /readyz and the caches follow the cluster. */
  ready(): Promise<boolean>;
  /** Deletes what Berth created for a team; the namespace stays if it holds anything else. */
  removeTeam(teamId: string): Promise<{ namespaceDeleted: boolean; foreign: string[] }>;
  /** Ids of apps with objects in this runtime's namespaces. */
  apps(): Promise<string[]>;
  /** The namespace of a team. */
  namespaceOf(teamId: string): string;
}

export function createKubernetesRuntime(opts: KubernetesRuntimeOptions): KubernetesRuntime {
  const kube = opts.kube ?? (opts.kubeconfig !== undefined ? kubeFromConfig(opts.kubeconfig) : undefined);
  if (!kube) throw new Error("createKubernetesRuntime: pass kubeconfig or kube");
  return new K8s(opts, kube);
}

/** A list + watch source for one kind, cluster-wide, Berth's objects only. */
function source<T extends KubeObject>(kube: Kube, apiVersion: string, kind: string, path: string): InformerSource<T> {
  return {
    list: () => kube.list<T>({ apiVersion, kind, labelSelector: MANAGED_SELECTOR }),
    watch: (rv, onEvent, onDone) =>
      // timeoutSeconds below client-node's 30 s idle timeout: the server ends quiet watches cleanly.
      kube.watch(path, { labelSelector: MANAGED_SELECTOR, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 25 }, onEvent, onDone),
  };
}

class K8s implements KubernetesRuntime {
  readonly name = "kubernetes";
  /** Kubernetes cannot pause a pod: freeze() is a no-op and the platform skips the frozen tier. */
  readonly canFreeze = false;
  readonly #opts: KubernetesRuntimeOptions;
  readonly #kube: Kube;
  readonly #prefix: string;
  readonly #teams: Teams;
  readonly #pods: Informer<Pod>;
  readonly #slices: Informer<EndpointSlice>;
  readonly #namer: DynoNamer;
  readonly #logs: LogFollower;
  readonly #deps: RolloutDeps;
  readonly #listeners = new Set<(e: RuntimeEvent) => void>();
  /** Waiters re-checked on every cache change. */
  readonly #waiters = new Set<() => void>();
  /** Last instance published per pod uid, per app: events are sent on change only. */
  readonly #published = new Map<string, Map<string, Instance>>();
  readonly #appNamespace = new Map<string, string>();
  #closed = false;

  constructor(opts: KubernetesRuntimeOptions, kube: Kube) {
    this.#opts = opts;
    this.#kube = kube;
    this.#prefix = opts.namespacePrefix ?? "berth-team-";
    this.#teams = new Teams(
      kube,
      this.#prefix,
      { routerNamespace: opts.routerNamespace, routerPodLabels: opts.routerPodLabels ?? { "app.kubernetes.io/component": "router" }, privateRanges: opts.privateRanges ?? PRIVATE_RANGES },
      opts.plan ?? (() => DEFAULT_PLAN),
      opts.logger,
    );
    const mine = (o: KubeObject) => (o.metadata.namespace ?? "").startsWith(this.#prefix);
    const infOpts = { clock: opts.clock, logger: opts.logger, filter: mine };
    this.#pods = new Informer<Pod>("pods", source(kube, "v1", "Pod", "/api/v1/pods"), infOpts);
    this.#slices = new Informer<EndpointSlice>("endpointslices", source(kube, "discovery.k8s.io/v1", "EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices"), infOpts);
    this.#namer = new DynoNamer(kube, () => this.#pods.items(), opts.logger);
    this.#logs = new LogFollower(kube, () => this.#pods.items(), (line) => this.#publish({ kind: "log", line }), opts.logger);
    this.#pods.onChange((c) => {
      if (c.type !== "DELETED") this.#namer.seen(c.obj);
      const app = c.obj.metadata.labels?.[L_APP];
      if (app) {
        this.#appNamespace.set(app, c.obj.metadata.namespace!);
        this.#changed(app);
      }
      if (this.#listeners.size) this.#logs.sync();
    });
    this.#slices.onChange((c) => {
      const app = c.obj.metadata.labels?.[L_APP];
      if (app) this.#changed(app);
    });
    this.#deps = {
      kube,
      teams: this.#teams,
      images: new RunImages(opts.registry, opts.baseImage, opts.fetch),
      runtimeClassByPlan: opts.runtimeClassByPlan ?? {},
      view: this.#view(),
      logger: opts.logger,
      remember: (appId, ns) => this.#appNamespace.set(appId, ns),
    };
    this.#pods.start();
    this.#slices.start();
  }

  namespaceOf(teamId: string): string {
    return this.#teams.namespace(teamId);
  }

  async ready(): Promise<boolean> {
    if (!this.#pods.healthy || !this.#slices.healthy) return false;
    return this.#kube.readyz();
  }

  // ---------------------------------------------------------------- reads

  async list(appId?: string): Promise<Instance[]> {
    await this.#synced();
    const addresses = readyAddresses(this.#slices.items());
    const out: Instance[] = [];
    for (const p of this.#pods.items()) {
      if (appId !== undefined && p.metadata.labels?.[L_APP] !== appId) continue;
      const i = instanceOf(p, addresses);
      if (i) out.push(i);
    }
    return sortInstances(out);
  }

  async #synced(): Promise<void> {
    const t = this.#opts.syncTimeoutMs ?? 5000;
    await Promise.all([this.#pods.whenHealthy(t), this.#slices.whenHealthy(t)]);
  }

  #view(): ClusterView {
    return {
      pods: (appId) => this.#pods.items().filter((p) => p.metadata.labels?.[L_APP] === appId),
      addresses: () => readyAddresses(this.#slices.items()),
      waitFor: (probe, timeoutMs) => this.#waitFor(probe, timeoutMs),
    };
  }

  /** First defined value of `probe`, checked now and on every cache change; undefined at the deadline. */
  #waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      let done = false;
      const finish = (v: T | undefined, err?: unknown) => {
        if (done) return;
        done = true;
        this.#waiters.delete(check);
        this.#opts.clock.clearTimeout(timer);
        if (err) reject(err);
        else resolve(v);
      };
      const check = () => {
        try {
          const v = probe();
          if (v !== undefined) finish(v);
        } catch (e) {
          finish(undefined, e);
        }
      };
      const timer = this.#opts.clock.setTimeout(() => {
        // A deadline reached while blind is the cluster's fault, not the app's.
        if (!this.#pods.healthy || !this.#slices.healthy) finish(undefined, new Unavailable("lost the Kubernetes API while waiting for instances"));
        else finish(undefined);
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  #changed(appId: string): void {
    for (const w of [...this.#waiters]) w();
    this.#publishInstances(appId);
  }

  #publish(e: RuntimeEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(e);
      } catch (err) {
        this.#opts.logger.error("runtime listener failed", { err });
      }
    }
  }

  /** Sends an instance event for each pod of the app whose view changed, and "down" for pods that went. */
  #publishInstances(appId: string): void {
    const addresses = readyAddresses(this.#slices.items());
    const before = this.#published.get(appId) ?? new Map<string, Instance>();
    const now = new Map<string, Instance>();
    for (const p of this.#pods.items()) {
      if (p.metadata.labels?.[L_APP] !== appId) continue;
      const i = instanceOf(p, addresses);
      if (i) now.set(p.metadata.uid ?? key(p), i);
    }
    for (const [uid, i] of now) {
      const old = before.get(uid);
      if (!old || old.state !== i.state || old.address?.host !== i.address?.host || old.restarts !== i.restarts || old.name !== i.name) {
        this.#publish({ kind: "instance", instance: i });
      }
    }
    for (const [uid, old] of before) {
      if (!now.has(uid)) this.#publish({ kind: "instance", instance: { ...old, state: "down", address: undefined } as Instance });
    }
    if (now.size) this.#published.set(appId, now);
    else this.#published.delete(appId);
  }

  subscribe(listener: (e: RuntimeEvent) => void): () => void {
    this.#listeners.add(listener);
    this.#logs.sync();
    return () => {
      this.#listeners.delete(listener);
    };
  }

  // ---------------------------------------------------------------- writes

  async apply(desired: DesiredApp): Promise<void> {
    await this.#synced();
    await rollOut(this.#deps, desired);
  }

  async scale(appId: string, type: string, quantity: number): Promise<void> {
    await this.#synced();
    const ns = await this.#namespaceOfApp(appId);
    try {
      await this.#kube.scaleDeployment(ns, deploymentName(appId, type), quantity);
    } catch (e) {
      if (isKubeError(e, 404)) throw new NotFound(`process type ${type} of app ${appId}`);
      throw e;
    }
    const label = processLabel(type);
    const settled = await this.#waitFor(() => {
      const pods = this.#pods.items().filter((p) => p.metadata.labels?.[L_APP] === appId && p.metadata.labels?.[L_PROCESS] === label && p.metadata.labels?.[L_ROLE] === "dyno");
      const live = pods.filter((p) => !p.metadata.deletionTimestamp);
      if (live.length !== quantity) return undefined;
      // A crashing instance counts as started (as locally); its restarts are the kubelet's business.
      if (live.some((p) => certainFailure(p))) return true;
      const addresses = readyAddresses(this.#slices.items());
      return live.every((p) => instanceOf(p, addresses)?.state === "up") && pods.length === live.length ? true : undefined;
    }, this.#opts.scaleTimeoutMs ?? 60_000);
    if (!settled) this.#opts.logger.warn("scale did not settle in time", { app: appId, type, quantity });
  }

  async restart(appId: string, which?: string): Promise<void> {
    await this.#synced();
    const ns = await this.#namespaceOfApp(appId);
    if (which && /\.[0-9]+$/.test(which)) {
      const pod = this.#pods.items().find((p) => p.metadata.labels?.[L_APP] === appId && p.metadata.labels?.[L_DYNO] === which && !p.metadata.deletionTimestamp);
      if (!pod) throw new NotFound(`dyno ${which}`);
      // Its Deployment starts a replacement, which takes the freed number.
      await this.#kube.delete({ apiVersion: "v1", kind: "Pod", name: pod.metadata.name, namespace: ns });
      return;
    }
    const deps = await this.#kube.list<Deployment>({ apiVersion: "apps/v1", kind: "Deployment", namespace: ns, labelSelector: appSelector(appId) });
    const chosen = deps.items.filter((d) => !which || d.metadata.name === deploymentName(appId, which));
    if (which && !chosen.length) throw new NotFound(`process type ${which}`);
    const at = new Date(this.#opts.clock.now()).toISOString();
    const gens: [string, number][] = [];
    for (const d of chosen) {
      // A rolling restart, start-first like a deploy. Its own field manager: applies of releases leave it alone.
      const r = await this.#kube.apply(
        { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: d.metadata.name, namespace: ns }, spec: { template: { metadata: { annotations: { [A_RESTARTED_AT]: at } } } } } as KubeObject,
        RESTART_FIELD_MANAGER,
      );
      gens.push([d.metadata.name, r.metadata.generation ?? 0]);
    }
    const deadline = Date.now() + (this.#opts.scaleTimeoutMs ?? 60_000);
    for (const [name, gen] of gens) {
      for (;;) {
        const d = await this.#kube.read<Deployment>({ apiVersion: "apps/v1", kind: "Deployment", name, namespace: ns });
        const s = d?.status;
        const want = d?.spec?.replicas ?? 0;
        if (!d || ((s?.observedGeneration ?? 0) >= gen && (s?.updatedReplicas ?? 0) >= want && (s?.availableReplicas ?? 0) >= want && (s?.replicas ?? 0) === want)) break;
        if (Date.now() > deadline) {
          this.#opts.logger.warn("restart did not settle in time", { app: appId, deployment: name });
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async runOnce(desired: DesiredApp, command: string, opts: { timeoutMs: number }): Promise<{ exitCode: number; output: string }> {
    await this.#synced();
    const input = await prepare(this.#deps, desired);
    const n = 1000 + Math.floor(Math.random() * 9000);
    const name = `${appSlug(desired.appId).slice(0, 40)}-run-${n}-${randomBytes(3).toString("hex")}`;
    const size = desired.processes.find((p) => p.type === "web")?.size ?? desired.processes[0]?.size ?? DYNO_SIZES.basic!;
    const pod = oneOffPod(input, command, { name, dyno: `run.${n}`, timeoutMs: opts.timeoutMs, size });
    await this.#kube.apply(pod, FIELD_MANAGER);
    const k = `${input.namespace}/${name}`;
    const remove = () => this.#kube.delete({ apiVersion: "v1", kind: "Pod", name, namespace: input.namespace }, { gracePeriodSeconds: 0 }).catch(() => false);
    const outcome = await this.#waitFor<{ exitCode: number } | { failed: string }>(() => {
      const p = this.#pods.get(k);
      if (!p) return undefined;
      const term = appContainer(p)?.state?.terminated;
      if (term) return { exitCode: term.exitCode };
      const failed = certainFailure(p);
      return failed ? { failed } : undefined;
    }, opts.timeoutMs);
    const output = async () => {
      try {
        return await readLog(this.#kube, input.namespace, name, 1024 * 1024);
      } catch {
        return "";
      }
    };
    if (!outcome) {
      const out = await output();
      await remove();
      // As locally (and as timeout(1) does): 124 for a run that was killed at its deadline.
      return { exitCode: 124, output: out };
    }
    if ("failed" in outcome) {
      await remove();
      throw new BootFailed(outcome.failed);
    }
    const out = await output();
    await remove();
    return { exitCode: outcome.exitCode, output: out };
  }

  async freeze(): Promise<void> {
    // Nothing to do: canFreeze is false, and the platform goes straight to zero.
  }

  async thaw(): Promise<void> {}

  async remove(appId: string): Promise<void> {
    await this.#synced();
    const sel = appSelector(appId);
    // Controllers first, so that nothing recreates the pods being deleted.
    for (const [apiVersion, kind] of [
      ["apps/v1", "Deployment"],
      ["v1", "Pod"],
      ["v1", "Service"],
      ["v1", "Secret"],
    ] as const) {
      const found = await this.#kube.list({ apiVersion, kind, labelSelector: sel });
      for (const o of found.items) {
        if (!(o.metadata.namespace ?? "").startsWith(this.#prefix)) continue;
        await this.#kube.delete({ apiVersion, kind, name: o.metadata.name, namespace: o.metadata.namespace! }, { propagationPolicy: "Background" });
      }
    }
    const gone = await this.#waitFor(() => (this.#pods.items().some((p) => p.metadata.labels?.[L_APP] === appId) ? undefined : true), 60_000);
    if (!gone) this.#opts.logger.warn("pods of a removed app still stopping", { app: appId });
    this.#appNamespace.delete(appId);
  }

  async removeTeam(teamId: string): Promise<{ namespaceDeleted: boolean; foreign: string[] }> {
    return this.#teams.remove(teamId);
  }

  async apps(): Promise<string[]> {
    const ids = new Set<string>();
    for (const [apiVersion, kind] of [
      ["apps/v1", "Deployment"],
      ["v1", "Pod"],
      ["v1", "Secret"],
    ] as const) {
      const found = await this.#kube.list({ apiVersion, kind, labelSelector: `${MANAGED_SELECTOR},${L_APP}` });
      for (const o of found.items) if ((o.metadata.namespace ?? "").startsWith(this.#prefix)) ids.add(o.metadata.labels![L_APP]!);
    }
    return [...ids];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pods.stop();
    this.#slices.stop();
    this.#logs.stop();
    this.#listeners.clear();
  }

  /** The namespace of an app: known from its pods or an earlier apply, else looked up by label. */
  async #namespaceOfApp(appId: string): Promise<string> {
    const known = this.#appNamespace.get(appId);
    if (known) return known;
    const found = await this.#kube.list<Deployment>({ apiVersion: "apps/v1", kind: "Deployment", labelSelector: appSelector(appId) });
    const ns = found.items.map((d) => d.metadata.namespace ?? "").find((n) => n.startsWith(this.#prefix));
    if (!ns) throw new NotFound(`app ${appId}`);
    this.#appNamespace.set(appId, ns);
    return ns;
  }
}

export type { Address };
