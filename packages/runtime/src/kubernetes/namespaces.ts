/**
 * A namespace per team, and what isolates it: Pod Security Admission `restricted`,
 * a default-deny NetworkPolicy, and a ResourceQuota and LimitRange from the team's plan.
 */
import { Conflict, Unavailable, type Logger } from "@berth/core";
import type { Kube, KubeObject } from "./kube.ts";
import { FIELD_MANAGER, L_MANAGED_BY, L_TEAM, MANAGED_BY, MANAGED_SELECTOR, APP_PORT, teamNamespace } from "./names.ts";

/** What a team's plan allows, turned into its namespace's ResourceQuota and LimitRange. */
export interface TeamPlan {
  name: string;
  /** Pods at once, one-off runs and one surge pod per process type during deploys included. */
  pods: number;
  /** Sum of memory limits (= requests) of the team's pods. */
  memoryMb: number;
  /** Sum of CPU requests, millicores. */
  cpuMillis: number;
  /** Largest memory limit of a single container. */
  maxDynoMemoryMb: number;
}

export const DEFAULT_PLAN: TeamPlan = { name: "default", pods: 40, memoryMb: 16 * 1024, cpuMillis: 16_000, maxDynoMemoryMb: 2560 };

/** Address ranges tenants may not reach: the private ranges of RFC 1918, link-local (cloud metadata) and CGNAT. */
export const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"];

export interface IsolationOptions {
  /** Namespace of the router: the only source of ingress into team namespaces. */
  routerNamespace: string;
  /** Labels of the router's pods within it (ANDed with the namespace). Empty: any pod of that namespace. */
  routerPodLabels: Record<string, string>;
  privateRanges: string[];
}

/** The four objects that make a team namespace. */
export function teamObjects(ns: string, teamId: string, plan: TeamPlan, iso: IsolationOptions): KubeObject[] {
  const labels = { [L_MANAGED_BY]: MANAGED_BY, [L_TEAM]: teamId };
  const meta = (name: string) => ({ name, namespace: ns, labels });
  const mi = (mb: number) => `${mb}Mi`;
  return [
    {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name: ns,
        labels: {
          ...labels,
          "pod-security.kubernetes.io/enforce": "restricted",
          "pod-security.kubernetes.io/enforce-version": "latest",
          "pod-security.kubernetes.io/warn": "restricted",
          "pod-security.kubernetes.io/warn-version": "latest",
          "pod-security.kubernetes.io/audit": "restricted",
          "pod-security.kubernetes.io/audit-version": "latest",
        },
      },
    },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: meta("berth-isolation"),
      spec: {
        // Every pod of the namespace; anything not allowed below is denied, both ways.
        podSelector: {},
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          {
            // kubernetes.io/metadata.name is set by the API server and cannot be forged by
            // whoever may label namespaces, unlike a label of our own.
            from: [
              {
                namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": iso.routerNamespace } },
                ...(Object.keys(iso.routerPodLabels).length ? { podSelector: { matchLabels: iso.routerPodLabels } } : {}),
              },
            ],
            ports: [{ protocol: "TCP", port: APP_PORT }],
          },
        ],
        egress: [
          {
            to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } } }],
            ports: [
              { protocol: "UDP", port: 53 },
              { protocol: "TCP", port: 53 },
            ],
          },
          { to: [{ ipBlock: { cidr: "0.0.0.0/0", except: iso.privateRanges } }] },
        ],
      },
    } as KubeObject,
    {
      apiVersion: "v1",
      kind: "ResourceQuota",
      metadata: meta("berth-plan"),
      spec: {
        hard: {
          pods: String(plan.pods),
          "requests.cpu": `${plan.cpuMillis}m`,
          "requests.memory": mi(plan.memoryMb),
          "limits.memory": mi(plan.memoryMb),
          "services.loadbalancers": "0",
          "services.nodeports": "0",
        },
      },
    } as KubeObject,
    {
      apiVersion: "v1",
      kind: "LimitRange",
      metadata: meta("berth-plan"),
      spec: {
        limits: [
          {
            type: "Container",
            max: { memory: mi(plan.maxDynoMemoryMb) },
            default: { memory: "512Mi" },
            defaultRequest: { memory: "512Mi", cpu: "100m" },
          },
        ],
      },
    } as KubeObject,
  ];
}

/** Team namespaces applied by this process (and with which plan), so a deploy does not re-apply them every time. */
export class Teams {
  readonly #kube: Kube;
  readonly #prefix: string;
  readonly #iso: IsolationOptions;
  readonly #plan: (teamId: string) => TeamPlan | Promise<TeamPlan>;
  readonly #logger: Logger;
  readonly #applied = new Map<string, string>();

  constructor(kube: Kube, prefix: string, iso: IsolationOptions, plan: (teamId: string) => TeamPlan | Promise<TeamPlan>, logger: Logger) {
    this.#kube = kube;
    this.#prefix = prefix;
    this.#iso = iso;
    this.#plan = plan;
    this.#logger = logger;
  }

  namespace(teamId: string): string {
    return teamNamespace(this.#prefix, teamId);
  }

  /** The plan of the team (for runtimeClassName). */
  plan(teamId: string): Promise<TeamPlan> {
    return Promise.resolve(this.#plan(teamId));
  }

  /** Applies the team's namespace objects unless this process already did with the same plan. */
  async ensure(teamId: string): Promise<{ namespace: string; plan: TeamPlan }> {
    const ns = this.namespace(teamId);
    const plan = await this.plan(teamId);
    const key = JSON.stringify(plan);
    if (this.#applied.get(teamId) === key) return { namespace: ns, plan };
    await this.#guardOwner(ns, teamId);
    for (const o of teamObjects(ns, teamId, plan, this.#iso)) await this.#kube.apply(o, FIELD_MANAGER);
    this.#applied.set(teamId, key);
    return { namespace: ns, plan };
  }

  /** Something changed behind our back (the namespace was deleted): apply again next time. */
  forget(teamId: string): void {
    this.#applied.delete(teamId);
  }

  /**
   * Refuses to take over a namespace that is not this team's (another team's hash, or
   * someone else's), and waits out one being deleted: nothing can be created in it.
   */
  async #guardOwner(ns: string, teamId: string): Promise<void> {
    let existing = await this.#kube.read({ apiVersion: "v1", kind: "Namespace", name: ns });
    const deadline = Date.now() + 120_000;
    while (existing?.metadata.deletionTimestamp && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      existing = await this.#kube.read({ apiVersion: "v1", kind: "Namespace", name: ns });
    }
    if (!existing) return;
    if (existing.metadata.deletionTimestamp) throw new Unavailable(`namespace ${ns} is still being deleted`);
    const labels = existing.metadata.labels ?? {};
    if (labels[L_MANAGED_BY] !== MANAGED_BY || labels[L_TEAM] !== teamId) {
      throw new Conflict(`namespace ${ns} exists and is not Berth's namespace of team ${teamId}; refusing to use it`);
    }
  }

  /**
   * Deletes what Berth created for the team: its objects by label, then the namespace,
   * unless something Berth did not create lives there (then the namespace stays).
   */
  async remove(teamId: string): Promise<{ namespaceDeleted: boolean; foreign: string[] }> {
    const ns = this.namespace(teamId);
    this.#applied.delete(teamId);
    const nsObj = await this.#kube.read({ apiVersion: "v1", kind: "Namespace", name: ns });
    if (!nsObj) return { namespaceDeleted: false, foreign: [] };
    if (nsObj.metadata.labels?.[L_MANAGED_BY] !== MANAGED_BY || nsObj.metadata.labels?.[L_TEAM] !== teamId) {
      return { namespaceDeleted: false, foreign: [`Namespace ${ns}`] };
    }
    const foreign: string[] = [];
    for (const [apiVersion, kind] of TEAM_KINDS) {
      const all = await this.#kube.list({ apiVersion, kind, namespace: ns });
      for (const o of all.items) {
        if (o.metadata.labels?.[L_MANAGED_BY] === MANAGED_BY) {
          await this.#kube.delete({ apiVersion, kind, name: o.metadata.name, namespace: ns }, { propagationPolicy: "Background" });
        } else if (!ignorable(kind, o)) {
          foreign.push(`${kind} ${o.metadata.name}`);
        }
      }
    }
    if (foreign.length) {
      this.#logger.warn("team namespace kept: it holds objects Berth did not create", { namespace: ns, foreign });
      return { namespaceDeleted: false, foreign };
    }
    await this.#kube.delete({ apiVersion: "v1", kind: "Namespace", name: ns });
    return { namespaceDeleted: true, foreign };
  }

  /** Team namespaces of this runtime (by prefix) that exist. */
  async list(): Promise<string[]> {
    const r = await this.#kube.list({ apiVersion: "v1", kind: "Namespace", labelSelector: MANAGED_SELECTOR });
    return r.items.map((n) => n.metadata.name).filter((n) => n.startsWith(this.#prefix));
  }
}

/** What a team namespace may hold, in deletion order (controllers first, so they do not recreate pods). */
const TEAM_KINDS: [string, string][] = [
  ["apps/v1", "Deployment"],
  ["apps/v1", "ReplicaSet"],
  ["batch/v1", "Job"],
  ["v1", "Pod"],
  ["v1", "Service"],
  ["v1", "Secret"],
  ["v1", "ConfigMap"],
  ["networking.k8s.io/v1", "NetworkPolicy"],
  ["v1", "ResourceQuota"],
  ["v1", "LimitRange"],
];

/** Objects Kubernetes itself puts in every namespace, or that belong to Berth's objects. */
function ignorable(kind: string, o: KubeObject): boolean {
  if (kind === "ConfigMap" && o.metadata.name === "kube-root-ca.crt") return true;
  // ReplicaSets and pods of Berth's Deployments carry Berth's labels; ones being deleted are on their way out.
  if (o.metadata.deletionTimestamp) return true;
  return false;
}

