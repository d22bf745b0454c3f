import { describe, expect, it } from "vitest";
import type { ContainerStatus, EndpointSlice, KubeEvent, Pod } from "./kube.ts";
import { certainFailure, instanceOf, readyAddresses, timeoutReason } from "./instances.ts";

const NS = "berth-team-a";
const pod = (name: string, status?: Partial<ContainerStatus>, over: { labels?: Record<string, string>; deleting?: boolean; gated?: boolean; phase?: string } = {}): Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name,
    namespace: NS,
    uid: `uid-${name}`,
    creationTimestamp: "2026-01-01T00:00:00Z",
    labels: { "berth.dev/app": "app1", "berth.dev/process": "web", "berth.dev/role": "dyno", "berth.dev/release": "3", "berth.dev/size": "eco", "berth.dev/dyno": "web.1", ...over.labels },
    annotations: { "berth.dev/process-type": over.labels?.["berth.dev/process"] ?? "web" },
    ...(over.deleting ? { deletionTimestamp: "2026-01-01T00:01:00Z" } : {}),
  },
  spec: over.gated ? { schedulingGates: [{ name: "berth.dev/dyno" }] } : {},
  status: { phase: over.phase ?? "Running", podIP: "10.88.0.7", ...(status ? { containerStatuses: [{ name: "app", ready: false, restartCount: 0, ...status }] } : {}) },
});
const slice = (endpoints: EndpointSlice["endpoints"]): EndpointSlice => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: "s-1", namespace: NS, labels: { "berth.dev/app": "app1" } },
  ports: [{ name: "web", port: 5000 }],
  endpoints,
});
const running = { state: { running: { startedAt: "2026-01-01T00:00:05Z" } } };

describe("readyAddresses", () => {
  it("keeps ready endpoints that point at pods; skips terminating and not-ready ones", () => {
    const m = readyAddresses([
      slice([
        { addresses: ["10.88.0.7"], conditions: { ready: true }, targetRef: { kind: "Pod", name: "p1", namespace: NS } },
        { addresses: ["10.88.0.8"], conditions: { ready: false }, targetRef: { kind: "Pod", name: "p2", namespace: NS } },
        { addresses: ["10.88.0.9"], conditions: { ready: false, terminating: true }, targetRef: { kind: "Pod", name: "p3", namespace: NS } },
        { addresses: ["10.88.0.10"], targetRef: { kind: "Pod", name: "p4" } },
      ]),
    ]);
    expect([...m]).toEqual([
      [`${NS}/p1`, { host: "10.88.0.7", port: 5000 }],
      [`${NS}/p4`, { host: "10.88.0.10", port: 5000 }],
    ]);
  });
});

describe("instanceOf", () => {
  const ready = readyAddresses([slice([{ addresses: ["10.88.0.7"], conditions: { ready: true }, targetRef: { kind: "Pod", name: "p", namespace: NS } }])]);

  it("is up with the EndpointSlice's address once the endpoint is ready", () => {
    expect(instanceOf(pod("p", running), ready)).toEqual({
      name: "web.1",
      appId: "app1",
      type: "web",
      release: 3,
      state: "up",
      address: { host: "10.88.0.7", port: 5000 },
      startedAt: new Date("2026-01-01T00:00:05Z"),
      restarts: 0,
      size: "eco",
    });
  });

  it("is starting while running but not yet in an EndpointSlice (no address)", () => {
    const i = instanceOf(pod("p", running), new Map());
    expect(i).toMatchObject({ state: "starting" });
    expect(i!.address).toBeUndefined();
  });

  it("takes the pod's own IP while its EndpointSlice lags behind its Ready condition", () => {
    const p = pod("p", running);
    p.status!.conditions = [{ type: "Ready", status: "True" }];
    expect(instanceOf(p, new Map())).toMatchObject({ state: "up", address: { host: "10.88.0.7", port: 5000 } });
    const stopping = pod("p", running, { deleting: true });
    stopping.status!.conditions = [{ type: "Ready", status: "True" }];
    expect(instanceOf(stopping, new Map())!.address).toBeUndefined();
  });

  it("has no instance before it has a dyno name (gated)", () => {
    expect(instanceOf(pod("p", undefined, { gated: true, labels: { "berth.dev/dyno": "" } }), ready)).toBeUndefined();
  });

  it("reports crashes with the local runtime's wording", () => {
    expect(instanceOf(pod("p", { state: { terminated: { exitCode: 1 } } }), ready)).toMatchObject({ state: "crashed", lastExit: "exited 1", restarts: 0 });
    expect(instanceOf(pod("p", { state: { terminated: { exitCode: 137, reason: "OOMKilled" } } }), ready)).toMatchObject({ state: "crashed", lastExit: "out of memory" });
    expect(instanceOf(pod("p", { restartCount: 1, state: { waiting: { reason: "CrashLoopBackOff" } }, lastState: { terminated: { exitCode: 143 } } }), ready)).toMatchObject({
      state: "crashed",
      lastExit: "killed by SIGTERM",
      restarts: 1,
    });
    const back = instanceOf(pod("p", { restartCount: 1, ...running, lastState: { terminated: { exitCode: 1 } } }), ready);
    expect(back).toMatchObject({ state: "up", restarts: 1, lastExit: "exited 1" });
  });

  it("is stopping once deleted, without an address", () => {
    const i = instanceOf(pod("p", running, { deleting: true }), ready);
    expect(i!.state).toBe("stopping");
    expect(i!.address).toBeUndefined();
  });

  it("counts non-web processes up when running, and finished one-offs down", () => {
    expect(instanceOf(pod("w", running, { labels: { "berth.dev/process": "worker", "berth.dev/dyno": "worker.1" } }), new Map())).toMatchObject({ type: "worker", state: "up" });
    expect(instanceOf(pod("r", { state: { terminated: { exitCode: 0 } } }, { labels: { "berth.dev/process": "run", "berth.dev/role": "one-off", "berth.dev/dyno": "run.1234" } }), new Map())).toMatchObject({ state: "down" });
  });
});

describe("boot failure reasons", () => {
  it("knows at once when the process exited, ran out of memory or cannot be pulled", () => {
    expect(certainFailure(pod("p", running))).toBeUndefined();
    expect(certainFailure(pod("p", { state: { terminated: { exitCode: 1 } } }))).toBe("exited with code 1");
    expect(certainFailure(pod("p", { state: { waiting: { reason: "CrashLoopBackOff" } }, lastState: { terminated: { exitCode: 2 } } }))).toBe("exited with code 2");
    expect(certainFailure(pod("p", { state: { terminated: { exitCode: 137, reason: "OOMKilled" } } }))).toBe("killed: out of memory");
    expect(certainFailure(pod("p", { state: { waiting: { reason: "InvalidImageName", message: "bad" } } }))).toBe("image could not be pulled (InvalidImageName: bad)");
    // The kubelet retries these: they fail a release only at its deadline.
    const pulling = pod("p", { state: { waiting: { reason: "ImagePullBackOff", message: "not found" } } });
    expect(certainFailure(pulling)).toBeUndefined();
    expect(timeoutReason(pulling, 15_000, { events: [], web: true })).toBe("image could not be pulled (ImagePullBackOff: not found) within 15s");
    expect(certainFailure(pod("p", { state: { waiting: { reason: "CreateContainerConfigError", message: "failed to sync secret cache" } } }))).toBeUndefined();
  });

  it("names what the health check answered, from the kubelet's probe event", () => {
    const events: KubeEvent[] = [{ apiVersion: "v1", kind: "Event", metadata: { name: "e" }, reason: "Unhealthy", message: "Readiness probe failed: HTTP probe failed with statuscode: 404" }];
    expect(timeoutReason(pod("p", running), 1500, { healthCheckPath: "/nope", events, web: true })).toBe("health check GET /nope answered 404 within 1.5s");
    expect(timeoutReason(pod("p", running), 1500, { events: [], web: true })).toBe("did not listen on PORT within 1.5s");
    expect(timeoutReason(pod("p", { state: { waiting: { reason: "ContainerCreating" } } }, { phase: "Pending" }), 15_000, { events: [], web: true })).toBe(
      "did not listen on PORT within 15s (not started yet: ContainerCreating)",
    );
    expect(timeoutReason(undefined, 15_000, { events: [], replicaFailure: 'pods "x" is forbidden: exceeded quota: berth-plan', web: true })).toMatch(/no instance could be created within 15s: .*exceeded quota/);
  });
});
