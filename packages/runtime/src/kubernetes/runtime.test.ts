/**
 * The runtime against FakeKube, with the test playing the Deployment controller, the
 * kubelet and the EndpointSlice controller (crudely: pods become ready at once, or
 * exit when their command says `exit 1`). The real thing is tested on a cluster in
 * test/k8s/.
 */
import { ManualClock, NotFound, Unavailable, silentLogger } from "@berth/core";
import { afterEach, describe, expect, it } from "vitest";
import { BootFailed, DYNO_SIZES, type DesiredApp, type RuntimeEvent } from "../port.ts";
import { createKubernetesRuntime, type KubernetesRuntime } from "./index.ts";
import type { Deployment, KubeObject, Pod } from "./kube.ts";
import { FakeKube, fakeRegistry } from "./testing.ts";

const NS = "berth-team-t1";
let ip = 10;

/** Deployment controller + kubelet + EndpointSlice controller, just enough for the runtime's waits. */
function simulate(kube: FakeKube) {
  const podsOf = (d: Deployment) =>
    [...kube.objects.values()].filter(
      (o): o is Pod => o.kind === "Pod" && o.metadata.namespace === d.metadata.namespace && o.metadata.labels?.["berth.dev/app"] === d.metadata.labels?.["berth.dev/app"] && o.metadata.labels?.["berth.dev/process"] === d.metadata.labels?.["berth.dev/process"] && o.metadata.labels?.["berth.dev/role"] === "dyno",
    );
  const ready = (p: Pod) => p.status?.containerStatuses?.[0]?.ready === true;
  const reconcile = (d: Deployment) => {
    const tpl = d.spec!.template as { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: any };
    const spec = tpl.metadata.labels["berth.dev/spec"];
    const want = d.spec!.replicas ?? 0;
    const pods = podsOf(d);
    const fresh = pods.filter((p) => p.metadata.labels?.["berth.dev/spec"] === spec);
    if (fresh.length < want && pods.length < want + 1) {
      kube.put({ apiVersion: "v1", kind: "Pod", metadata: { name: `${d.metadata.name}-${Math.random().toString(36).slice(2, 7)}`, namespace: d.metadata.namespace!, labels: { ...tpl.metadata.labels }, annotations: { ...tpl.metadata.annotations } }, spec: structuredClone(tpl.spec), status: { phase: "Pending" } } as Pod);
      return reconcile(d);
    }
    for (const extra of fresh.slice(want)) kube.remove("v1", "Pod", extra.metadata.namespace, extra.metadata.name);
    // maxUnavailable 0: old pods go only once the new ones are ready.
    if (fresh.filter(ready).length >= want) for (const old of pods.filter((p) => p.metadata.labels?.["berth.dev/spec"] !== spec)) kube.remove("v1", "Pod", old.metadata.namespace, old.metadata.name);
    slices(d.metadata.namespace!, d.metadata.labels!["berth.dev/app"]!);
  };
  const slices = (ns: string, app: string) => {
    const endpoints = [...kube.objects.values()]
      .filter((o): o is Pod => o.kind === "Pod" && o.metadata.namespace === ns && o.metadata.labels?.["berth.dev/app"] === app && o.metadata.labels?.["berth.dev/process"] === "web" && ready(o as Pod))
      .map((p) => ({ addresses: [p.status!.podIP!], conditions: { ready: true }, targetRef: { kind: "Pod", name: p.metadata.name, namespace: ns } }));
    kube.put({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: `${app}-web-x`, namespace: ns, labels: { "app.kubernetes.io/managed-by": "berth", "berth.dev/app": app } }, ports: [{ name: "web", port: 5000 }], endpoints } as KubeObject);
  };
  const deploymentOf = (p: Pod) =>
    [...kube.objects.values()].find(
      (o) => o.kind === "Deployment" && o.metadata.namespace === p.metadata.namespace && o.metadata.labels?.["berth.dev/app"] === p.metadata.labels?.["berth.dev/app"] && o.metadata.labels?.["berth.dev/process"] === p.metadata.labels?.["berth.dev/process"],
    ) as Deployment | undefined;
  kube.onApply = (o) => {
    if (o.kind === "Deployment") reconcile(o as Deployment);
  };
  kube.onPodPatched = (o) => {
    const p = o as Pod & { spec: any };
    if (p.spec?.schedulingGates || p.status?.containerStatuses) return;
    const command = p.spec.containers[0].env.find((e: { name: string }) => e.name === "BERTH_COMMAND").value as string;
    const status = command.includes("exit 1")
      ? { phase: "Running", podIP: `10.88.0.${++ip}`, containerStatuses: [{ name: "app", ready: false, restartCount: 0, state: { terminated: { exitCode: 1 } } }] }
      : { phase: "Running", podIP: `10.88.0.${++ip}`, containerStatuses: [{ name: "app", ready: true, restartCount: 0, state: { running: { startedAt: new Date().toISOString() } } }] };
    kube.put({ ...p, status });
    // The EndpointSlice controller reacts to readiness directly; old pods go a few controller hops later.
    slices(p.metadata.namespace!, p.metadata.labels!["berth.dev/app"]!);
    const d = deploymentOf(p);
    if (d) reconcile(d);
  };
}

const runtimes: KubernetesRuntime[] = [];
afterEach(async () => {
  for (const r of runtimes.splice(0)) await r.close();
});

function setup() {
  const kube = new FakeKube();
  simulate(kube);
  const reg = fakeRegistry();
  reg.image("berth/base", ["os"], { os: "linux", architecture: "amd64", config: { Env: ["PATH=/usr/local/bin:/usr/bin:/bin"] } }, "local");
  const app = reg.image("berth/app1", ["app"], { config: { WorkingDir: "/workspace" } });
  const runtime = createKubernetesRuntime({
    kube,
    routerNamespace: "berth-system",
    registry: { host: reg.host, insecure: true },
    baseImage: `${reg.host}/berth/base:local`,
    fetch: reg.fetch,
    clock: new ManualClock(0),
    logger: silentLogger,
    syncTimeoutMs: 200,
  });
  runtimes.push(runtime);
  const desired = (release: number, over: Partial<DesiredApp> = {}, command = "node server.js", appId = "app1"): DesiredApp => ({
    teamId: "t1",
    appId,
    appName: appId,
    release,
    image: { kind: "registry", reference: app.reference, digest: app.digest },
    env: { RELEASE: String(release) },
    processes: [{ type: "web", command, quantity: 1, size: DYNO_SIZES.eco! }],
    bootTimeoutMs: 5000,
    graceMs: 1000,
    ...over,
  });
  return { kube, runtime, desired, reg };
}

describe("KubernetesRuntime on a fake API server", () => {
  it("applies a release: team namespace and isolation, Secret, Deployment and Service by server-side apply; web.1 up", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    const list = await runtime.list("app1");
    expect(list).toEqual([expect.objectContaining({ name: "web.1", type: "web", release: 1, state: "up", address: { host: expect.stringMatching(/^10\.88\.0\./), port: 5000 } })]);
    const applied = kube.calls.filter((c) => c.startsWith("apply"));
    expect(applied).toEqual([
      `apply Namespace /${NS} by berth`,
      `apply NetworkPolicy ${NS}/berth-isolation by berth`,
      `apply ResourceQuota ${NS}/berth-plan by berth`,
      `apply LimitRange ${NS}/berth-plan by berth`,
      expect.stringMatching(new RegExp(`^apply Secret ${NS}/app1-env-[0-9a-f]{12} by berth$`)),
      `apply Service ${NS}/app1-web by berth`,
      `apply Deployment ${NS}/app1-web by berth`,
    ]);
    // The pod was named and ungated in one guarded patch.
    const pod = [...kube.objects.values()].find((o) => o.kind === "Pod") as Pod;
    expect(pod.metadata.labels?.["berth.dev/dyno"]).toBe("web.1");
    expect(pod.spec?.schedulingGates).toBeUndefined();
  });

  it("rolls back to the previous template and throws BootFailed when the new release exits; the old pod is untouched", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    const before = (await runtime.list("app1"))[0]!;
    const oldPod = [...kube.objects.values()].find((o) => o.kind === "Pod")!;
    const dep1 = structuredClone(kube.find("apps/v1", "Deployment", NS, "app1-web") as Deployment);
    const err = await runtime.apply(desired(2, {}, "exit 1")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BootFailed);
    expect((err as BootFailed).reason).toBe("exited with code 1");
    const dep = kube.find("apps/v1", "Deployment", NS, "app1-web") as Deployment;
    expect(dep.spec!.template).toEqual(dep1.spec!.template);
    expect(await runtime.list("app1")).toEqual([before]);
    expect([...kube.objects.values()].find((o) => o.kind === "Pod")!.metadata.uid).toBe(oldPod.metadata.uid);
    // The failed release's config Secret went with it.
    expect([...kube.objects.values()].filter((o) => o.kind === "Secret")).toHaveLength(1);
  });

  it("is start-first: the new instance is up before the old one goes, in the events too", async () => {
    const { runtime, desired } = setup();
    await runtime.apply(desired(1));
    const events: string[] = [];
    runtime.subscribe((e: RuntimeEvent) => {
      if (e.kind === "instance") events.push(`${e.instance.release} ${e.instance.state}`);
    });
    await runtime.apply(desired(2));
    expect(events.indexOf("2 up")).toBeGreaterThanOrEqual(0);
    expect(events.indexOf("1 down")).toBeGreaterThan(events.indexOf("2 up"));
    expect((await runtime.list("app1")).map((i) => [i.name, i.release, i.state])).toEqual([["web.1", 2, "up"]]);
  });

  it("scales through the scale subresource, numbering dynos from the lowest free", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    await runtime.scale("app1", "web", 3);
    expect(kube.calls).toContain(`scale ${NS}/app1-web 3`);
    expect((await runtime.list("app1")).map((i) => i.name)).toEqual(["web.1", "web.2", "web.3"]);
    // web.2 dies; its replacement takes the free number.
    const p2 = [...kube.objects.values()].find((o) => o.metadata.labels?.["berth.dev/dyno"] === "web.2")!;
    kube.remove("v1", "Pod", NS, p2.metadata.name);
    kube.onApply!(kube.find("apps/v1", "Deployment", NS, "app1-web")!);
    await new Promise((r) => setTimeout(r, 10));
    expect((await runtime.list("app1")).map((i) => i.name)).toEqual(["web.1", "web.2", "web.3"]);
    await expect(runtime.scale("nope", "web", 1)).rejects.toBeInstanceOf(NotFound);
  });

  it("removes only what carries the app's label, in this runtime's namespaces", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    await runtime.apply(desired(1, {}, "node server.js", "app2"));
    kube.put({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "theirs", namespace: NS, labels: { "berth.dev/app": "app1" } } });
    kube.put({ apiVersion: "v1", kind: "Secret", metadata: { name: "elsewhere", namespace: "other", labels: { "app.kubernetes.io/managed-by": "berth", "berth.dev/app": "app1" } } });
    const count = (app: string) => [...kube.objects.values()].filter((o) => o.metadata.labels?.["berth.dev/app"] === app).length;
    const app2Before = count("app2");
    await runtime.remove("app1");
    const left = [...kube.objects.values()].filter((o) => o.metadata.labels?.["berth.dev/app"] === "app1").map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`);
    expect(left.sort()).toEqual([`ConfigMap/${NS}/theirs`, "EndpointSlice/berth-team-t1/app1-web-x", "Secret/other/elsewhere"]);
    expect(count("app2")).toBe(app2Before);
    expect(await runtime.list("app1")).toEqual([]);
    expect((await runtime.list("app2")).map((i) => i.state)).toEqual(["up"]);
  });

  it("never answers an empty list when the API server is unreachable: Unavailable, and ready() is false", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    expect(await runtime.ready()).toBe(true);
    kube.down = true;
    for (const w of kube.watches) w.end(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
    await new Promise((r) => setTimeout(r, 10));
    expect(await runtime.ready()).toBe(false);
    await expect(runtime.list()).rejects.toBeInstanceOf(Unavailable);
    await expect(runtime.list("app1")).rejects.toThrow(/cannot follow pods in the cluster: .*ECONNREFUSED/);
    await expect(runtime.apply(desired(2))).rejects.toBeInstanceOf(Unavailable);
  });

  it("removes a team's objects and its namespace, keeping a namespace that holds something Berth did not create", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    kube.put({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "someone-elses", namespace: NS } });
    expect(await runtime.removeTeam("t1")).toEqual({ namespaceDeleted: false, foreign: ["ConfigMap someone-elses"] });
    expect(kube.find("v1", "Namespace", undefined, NS)).toBeDefined();
    expect(kube.find("v1", "ConfigMap", NS, "someone-elses")).toBeDefined();
    expect([...kube.objects.values()].filter((o) => o.metadata.labels?.["app.kubernetes.io/managed-by"] === "berth" && o.metadata.namespace === NS && o.kind !== "EndpointSlice")).toEqual([]);
    kube.remove("v1", "ConfigMap", NS, "someone-elses");
    expect(await runtime.removeTeam("t1")).toEqual({ namespaceDeleted: true, foreign: [] });
  });

  it("refuses to use a namespace that is not Berth's namespace of that team", async () => {
    const { kube, runtime, desired } = setup();
    kube.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: NS, labels: { "berth.dev/team": "someone-else", "app.kubernetes.io/managed-by": "berth" } } });
    await expect(runtime.apply(desired(1))).rejects.toThrow(/not Berth's namespace of team t1/);
  });
});

describe("team isolation objects", () => {
  it("admits ingress only from the router's namespace and egress only to DNS and public addresses", async () => {
    const { kube, runtime, desired } = setup();
    await runtime.apply(desired(1));
    const ns = kube.find("v1", "Namespace", undefined, NS)!;
    expect(ns.metadata.labels).toMatchObject({ "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted", "berth.dev/team": "t1" });
    const np = kube.find("networking.k8s.io/v1", "NetworkPolicy", NS, "berth-isolation") as any;
    expect(np.spec.podSelector).toEqual({});
    expect(np.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(np.spec.ingress).toEqual([
      {
        from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "berth-system" } }, podSelector: { matchLabels: { "app.kubernetes.io/component": "router" } } }],
        ports: [{ protocol: "TCP", port: 5000 }],
      },
    ]);
    expect(np.spec.egress[0]).toEqual({ to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } } }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] });
    expect(np.spec.egress[1].to[0].ipBlock).toEqual({ cidr: "0.0.0.0/0", except: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"] });
    const quota = kube.find("v1", "ResourceQuota", NS, "berth-plan") as any;
    expect(quota.spec.hard).toMatchObject({ pods: "40", "requests.memory": "16384Mi", "limits.memory": "16384Mi", "requests.cpu": "16000m" });
    const limits = kube.find("v1", "LimitRange", NS, "berth-plan") as any;
    expect(limits.spec.limits[0]).toMatchObject({ type: "Container", max: { memory: "2560Mi" } });
  });
});
