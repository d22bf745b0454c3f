import { ManualClock, Unavailable, silentLogger } from "@berth/core";
import { describe, expect, it } from "vitest";
import { Informer, type Change } from "./informer.ts";
import type { KubeObject, Pod } from "./kube.ts";
import { FakeKube } from "./testing.ts";

const pod = (name: string, ns = "berth-team-a", labels: Record<string, string> = { "app.kubernetes.io/managed-by": "berth" }): Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns, labels },
});

function setup(filter?: (o: Pod) => boolean) {
  const kube = new FakeKube();
  const clock = new ManualClock(0);
  const inf = new Informer<Pod>(
    "pods",
    {
      list: () => kube.list<Pod>({ apiVersion: "v1", kind: "Pod", labelSelector: "app.kubernetes.io/managed-by=berth" }),
      watch: (rv, onEvent, onDone) => kube.watch("/api/v1/pods", { resourceVersion: rv }, onEvent, onDone),
    },
    { clock, logger: silentLogger, ...(filter ? { filter } : {}) },
  );
  const changes: string[] = [];
  inf.onChange((c: Change<Pod>) => changes.push(`${c.type} ${c.obj.metadata.name}`));
  return { kube, clock, inf, changes };
}
const tick = () => new Promise((r) => setTimeout(r, 0));
async function settle() {
  for (let i = 0; i < 10; i++) await tick();
}
const withRv = (o: KubeObject, rv: string): KubeObject => ({ ...o, metadata: { ...o.metadata, resourceVersion: rv } });

describe("Informer", () => {
  it("lists, then watches from the list's resourceVersion, applying events in order", async () => {
    const { kube, inf, changes } = setup();
    kube.put(pod("a"));
    inf.start();
    await settle();
    expect(inf.healthy).toBe(true);
    const w = kube.openWatch("/api/v1/pods")!;
    expect(w.params.resourceVersion).toBe(kube.rv());
    w.emit("ADDED", withRv(pod("b"), "201"));
    w.emit("MODIFIED", withRv(pod("a"), "202"));
    w.emit("DELETED", withRv(pod("b"), "203"));
    expect(inf.items().map((p) => p.metadata.name)).toEqual(["a"]);
    expect(changes).toEqual(["ADDED a", "ADDED b", "MODIFIED a", "DELETED b"]);
    expect(inf.resourceVersion).toBe("203");
  });

  it("resumes a watch that ended from the last resourceVersion seen (bookmarks included), without relisting", async () => {
    const { kube, inf } = setup();
    inf.start();
    await settle();
    const w1 = kube.openWatch("/api/v1/pods")!;
    w1.emit("ADDED", withRv(pod("x"), "300"));
    w1.emit("BOOKMARK", { apiVersion: "v1", kind: "Pod", metadata: { name: "", resourceVersion: "350" } });
    w1.end();
    await settle();
    const w2 = kube.openWatch("/api/v1/pods")!;
    expect(w2).not.toBe(w1);
    expect(w2.params.resourceVersion).toBe("350");
    expect(inf.relists).toBe(1);
    expect(inf.items().map((p) => p.metadata.name)).toEqual(["x"]);
  });

  it("relists on 410 Gone and delivers the difference as changes", async () => {
    const { kube, inf, changes } = setup();
    kube.put(pod("stays"));
    kube.put(pod("goes"));
    inf.start();
    await settle();
    // While we were away: one pod deleted, one created, and etcd compacted our version.
    kube.objects.clear();
    kube.put(pod("stays"), { quiet: true });
    kube.put(pod("new"), { quiet: true });
    const w = kube.openWatch("/api/v1/pods")!;
    w.emit("ERROR", { apiVersion: "v1", kind: "Status", code: 410, message: "too old resource version" } as unknown as KubeObject);
    w.end();
    await settle();
    expect(inf.relists).toBe(2);
    expect(inf.items().map((p) => p.metadata.name).sort()).toEqual(["new", "stays"]);
    expect(changes.slice(2)).toEqual(["DELETED goes", "MODIFIED stays", "ADDED new"]);
    expect(kube.openWatch("/api/v1/pods")!.params.resourceVersion).toBe(kube.rv());
  });

  it("also relists when the watch request itself answers 410", async () => {
    const { kube, inf } = setup();
    inf.start();
    await settle();
    kube.openWatch("/api/v1/pods")!.end(Object.assign(new Error("Gone"), { statusCode: 410 }));
    await settle();
    expect(inf.relists).toBe(2);
  });

  it("is unhealthy while the API server cannot be reached, and recovers with backoff", async () => {
    const { kube, clock, inf } = setup();
    inf.start();
    await settle();
    kube.down = true;
    kube.openWatch("/api/v1/pods")!.end(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
    await settle();
    expect(inf.healthy).toBe(false);
    await expect(inf.whenHealthy(20)).rejects.toBeInstanceOf(Unavailable);
    // Retries at 200 ms, 400 ms…: each fails while down.
    clock.advance(200);
    await settle();
    expect(inf.healthy).toBe(false);
    kube.down = false;
    clock.advance(400);
    await settle();
    expect(inf.healthy).toBe(true);
    await inf.whenHealthy(20);
    expect(inf.relists).toBe(1);
  });

  it("is unhealthy until its first list succeeds", async () => {
    const { kube, clock, inf } = setup();
    kube.down = true;
    inf.start();
    await settle();
    expect(inf.healthy).toBe(false);
    kube.down = false;
    clock.advance(200);
    await settle();
    expect(inf.healthy).toBe(true);
  });

  it("keeps only what the filter accepts (another runtime's namespaces)", async () => {
    const { kube, inf } = setup((p) => p.metadata.namespace!.startsWith("berth-team-"));
    kube.put(pod("mine"));
    kube.put(pod("theirs", "other-ns"));
    inf.start();
    await settle();
    kube.openWatch("/api/v1/pods")!.emit("ADDED", withRv(pod("theirs-2", "other-ns"), "999"));
    expect(inf.items().map((p) => p.metadata.name)).toEqual(["mine"]);
  });

  it("stops watching when stopped", async () => {
    const { kube, inf } = setup();
    inf.start();
    await settle();
    inf.stop();
    expect(kube.openWatch("/api/v1/pods")).toBeUndefined();
  });
});
