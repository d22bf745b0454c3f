/**
 * Berth on the real single-node cluster, end to end: teams and apps through the
 * Platform API, `git push` of a Node.js app, the builder pushing to the cluster's
 * registry, the Kubernetes runtime creating the objects, the router answering from
 * the pod, scale to zero and wake, Pod Security admission in a team namespace, and
 * one team's deletions leaving another team's objects alone.
 *
 * Prints the time each step took.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { kubectl } from "./cluster.ts";
import { startK8sPlatform, type K8sPlatform } from "./platform.ts";

const PREFIX = "berth-e2e-";
const timings: [string, number][] = [];
async function timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings.push([what, Math.round(performance.now() - t0)]);
  }
}
async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const server = (body: string) => `
const http = require("node:http");
http.createServer((req, res) => {
  if (req.url === "/env") return res.end(JSON.stringify({ dyno: process.env.DYNO, port: process.env.PORT, uid: process.getuid() }));
  res.end(${JSON.stringify(body)});
}).listen(process.env.PORT, () => console.log("listening on " + process.env.PORT));
process.on("SIGTERM", () => process.exit(0));
`;
const files = (body: string, name: string) => ({
  "package.json": JSON.stringify({ name, version: "1.0.0", private: true, engines: { node: "24.x" }, scripts: { start: "node server.js" } }),
  "package-lock.json": JSON.stringify({ name, version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name, version: "1.0.0" } } }),
  "server.js": server(body),
  Procfile: "web: node server.js\n",
});

let p: K8sPlatform;
let owner: { token: string; id: string };
let other: { token: string; id: string };
const suffix = Math.random().toString(36).slice(2, 7);
const A = { team: `k8s-a-${suffix}`, app: `k8s-a-app-${suffix}`, id: "", teamId: "", ns: "" };
const B = { team: `k8s-b-${suffix}`, app: `k8s-b-app-${suffix}`, id: "", teamId: "", ns: "" };

async function createTeamApp(token: string, t: typeof A): Promise<void> {
  expect((await p.call("POST", "/teams", { token, body: { name: t.team } })).status).toBe(201);
  const app = await p.call("POST", "/teams/apps", { token, body: { name: t.app, team: t.team } });
  expect(app.status, JSON.stringify(app.body)).toBe(201);
  t.id = app.body.id;
  const row = await p.db.selectFrom("apps").select("team_id").where("id", "=", t.id).executeTakeFirstOrThrow();
  t.teamId = row.team_id;
  t.ns = p.runtime.namespaceOf(t.teamId);
}

async function push(token: string, t: typeof A, body: string): Promise<string> {
  const repo = await p.repo(files(body, t.app));
  const r = await p.git(repo, ["push", p.remote(t.app, token), "main"]);
  const out = r.stdout + r.stderr;
  expect(r.code, out).toBe(0);
  return out;
}

const podsOf = async (ns: string, appId: string) =>
  JSON.parse(await kubectl(["-n", ns, "get", "pods", "-l", `berth.dev/app=${appId},berth.dev/role=dyno`, "-o", "json"])).items as any[];

beforeAll(async () => {
  p = await timed("platform start (Postgres, API, builder, router, runtime informers)", () => startK8sPlatform({ namespacePrefix: PREFIX, log: !!process.env.BERTH_TEST_LOG }));
  owner = await p.user();
  other = await p.user();
  await createTeamApp(owner.token, A);
  await createTeamApp(other.token, B);
}, 120_000);

afterAll(async () => {
  if (p) {
    for (const t of [A, B]) if (t.teamId) await p.runtime.removeTeam(t.teamId).catch(() => undefined);
    await p.close();
  }
  const width = Math.max(...timings.map(([w]) => w.length));
  console.log(["", "k8s e2e timings:", ...timings.map(([w, ms]) => `  ${w.padEnd(width)}  ${(ms / 1000).toFixed(2)} s`)].join("\n"));
}, 120_000);

describe("Berth on Kubernetes", () => {
  test("git push deploys to a pod in the team's namespace and the router answers from it", async () => {
    const out = await timed("git push → released (build, registry push, rollout)", () => push(owner.token, A, "hello from kubernetes"));
    expect(out).toContain("remote: -----> Pushing image...");
    expect(out).toMatch(/remote:\s+Released v2/);
    const res = await timed("router answers after the release", () =>
      until("the router to answer", async () => {
        const r = await p.get(`${A.app}.localhost`);
        return r.status === 200 ? r : undefined;
      }, 30_000),
    );
    expect(res.text).toBe("hello from kubernetes");
    const env = JSON.parse((await p.get(`${A.app}.localhost`, "/env")).text);
    expect(env).toEqual({ dyno: "web.1", port: "5000", uid: 65534 });

    // What the runtime made of it, as the cluster has it.
    const ns = JSON.parse(await kubectl(["get", "namespace", A.ns, "-o", "json"]));
    expect(ns.metadata.labels).toMatchObject({ "pod-security.kubernetes.io/enforce": "restricted", "app.kubernetes.io/managed-by": "berth", "berth.dev/team": A.teamId });
    const dep = JSON.parse(await kubectl(["-n", A.ns, "get", "deployment", "-l", `berth.dev/app=${A.id}`, "--show-managed-fields", "-o", "json"])).items[0];
    const c = dep.spec.template.spec.containers[0];
    expect(c.image).toMatch(new RegExp(`^127\\.0\\.0\\.1:5100/berth/${A.id}@sha256:[0-9a-f]{64}$`));
    expect(dep.spec.template.metadata.annotations["berth.dev/app-image"]).toMatch(/^127\.0\.0\.1:5100\/berth\/.+@sha256:/);
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(dep.spec.strategy.rollingUpdate).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    expect(dep.metadata.managedFields.some((f: any) => f.manager === "berth" && f.operation === "Apply")).toBe(true);
    const kinds = (await kubectl(["-n", A.ns, "get", "networkpolicy,resourcequota,limitrange,service,secret", "-l", "app.kubernetes.io/managed-by=berth", "-o", "name"])).trim().split("\n");
    expect(kinds.some((k) => k.startsWith("networkpolicy"))).toBe(true);
    expect(kinds.some((k) => k.startsWith("resourcequota"))).toBe(true);
    expect(kinds.some((k) => k.startsWith("limitrange"))).toBe(true);
    expect(kinds.some((k) => k.startsWith("service/"))).toBe(true);
    expect(kinds.some((k) => k.startsWith("secret/"))).toBe(true);
    const dynos = await p.call("GET", `/apps/${A.app}/dynos`, { token: owner.token });
    expect(dynos.body).toEqual([expect.objectContaining({ name: "web.1", type: "web", state: "up" })]);
  }, 300_000);

  test("an idle app scales to zero, and the next request wakes it", async () => {
    const patched = await p.call("PATCH", `/apps/${A.app}`, { token: owner.token, body: { min_instances: 0, idle_freeze_seconds: 1, idle_stop_seconds: 2 } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    await timed("idle → scaled to zero (2 s idle setting; pod gone)", () => until("no pods", async () => ((await podsOf(A.ns, A.id)).length === 0 ? true : undefined), 90_000, 250));
    const dep = JSON.parse(await kubectl(["-n", A.ns, "get", "deployment", "-l", `berth.dev/app=${A.id}`, "-o", "json"])).items[0];
    expect(dep.spec.replicas).toBe(0);
    // Stay awake from here on: the wake below must not race the next idle stop.
    await p.call("PATCH", `/apps/${A.app}`, { token: owner.token, body: { idle_stop_seconds: 3600 } });
    const woke = await timed("cold start: request at zero → answered (activator holds it)", () => p.get(`${A.app}.localhost`));
    expect(woke.status).toBe(200);
    expect(woke.text).toBe("hello from kubernetes");
    expect((await podsOf(A.ns, A.id)).length).toBe(1);
  }, 180_000);

  test("Pod Security admission rejects a privileged pod in a team namespace", async () => {
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "privileged-probe", namespace: A.ns },
      spec: { containers: [{ name: "c", image: "127.0.0.1:5100/berth/base:local", command: ["sleep", "1"], securityContext: { privileged: true } }] },
    };
    const err = await timed("privileged pod rejected by admission", () => kubectl(["apply", "-f", "-"], JSON.stringify(pod)).then(() => undefined, (e: { stderr?: string }) => e.stderr ?? String(e)));
    expect(err).toMatch(/violates PodSecurity "restricted:latest"/);
    expect(err).toMatch(/privileged/);
  }, 60_000);

  test("deleting one team's app and team leaves another team's objects (and foreign ones) untouched", async () => {
    await timed("second team: git push → released", () => push(other.token, B, "team b"));
    expect((await p.get(`${B.app}.localhost`)).text).toBe("team b");
    const snapshot = async () =>
      JSON.parse(await kubectl(["-n", B.ns, "get", "deployment,service,secret,pod,networkpolicy,resourcequota,limitrange", "-o", "json"])).items.map(
        (o: any) => `${o.kind}/${o.metadata.name}/${o.metadata.uid}/${o.kind === "Pod" ? o.status.podIP : o.metadata.resourceVersion}`,
      ) as string[];
    const before = (await snapshot()).sort();
    // Something Berth did not create, in Berth's namespace of team A.
    await kubectl(["-n", A.ns, "create", "configmap", "not-berths", "--from-literal=k=v"]);

    const del = await p.call("DELETE", `/apps/${A.app}`, { token: owner.token });
    expect(del.status).toBe(200);
    await timed("app deleted → its objects gone", () =>
      until("app A's objects gone", async () => ((await kubectl(["-n", A.ns, "get", "deployment,service,secret,pod", "-l", `berth.dev/app=${A.id}`, "-o", "name"])).trim() === "" ? true : undefined), 90_000, 250),
    );
    const removed = await timed("team removed (namespace kept: foreign object)", () => p.runtime.removeTeam(A.teamId));
    expect(removed).toEqual({ namespaceDeleted: false, foreign: ["ConfigMap not-berths"] });
    expect((await kubectl(["-n", A.ns, "get", "configmap", "not-berths", "-o", "name"])).trim()).toBe("configmap/not-berths");
    expect((await kubectl(["-n", A.ns, "get", "networkpolicy,resourcequota,limitrange", "-o", "name"])).trim()).toBe("");

    expect((await snapshot()).sort()).toEqual(before);
    expect((await p.get(`${B.app}.localhost`)).text).toBe("team b");

    await kubectl(["-n", A.ns, "delete", "configmap", "not-berths"]);
    expect((await p.runtime.removeTeam(A.teamId)).namespaceDeleted).toBe(true);
    expect((await snapshot()).sort()).toEqual(before);
  }, 300_000);
});
