import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { DYNO_SIZES, type DesiredApp } from "../port.ts";
import { appSlug, deploymentName, envSecretName, teamNamespace } from "./names.ts";
import { DYNO_INIT, deployment, envSecret, oneOffPod, resources, webService, type WorkloadInput } from "./workloads.ts";

const APP = "6b21d120-12e7-4e8f-a35d-ad01ca8700b3";
const desired = (over: Partial<DesiredApp> = {}): DesiredApp => ({
  teamId: "team-1",
  appId: APP,
  appName: "demo",
  release: 7,
  image: { kind: "registry", reference: `r:5000/berth/${APP}@sha256:${"a".repeat(64)}`, digest: `sha256:${"a".repeat(64)}` },
  env: { GREETING: "hi", TRICKY: `a "b" = c; $d` },
  processes: [
    { type: "web", command: "node server.js", quantity: 2, size: DYNO_SIZES["standard-1x"]! },
    { type: "worker", command: "node worker.js", quantity: 1, size: DYNO_SIZES.eco! },
  ],
  bootTimeoutMs: 15_000,
  graceMs: 2500,
  ...over,
});
const input = (d = desired()): WorkloadInput => ({
  namespace: "berth-team-team-1",
  desired: d,
  image: { reference: `r:5000/berth/${APP}@sha256:${"b".repeat(64)}`, appImage: (d.image as { reference: string }).reference },
  secretName: envSecretName(d.appId, d.env),
});
const any = (o: unknown) => o as any;

describe("names", () => {
  it("keeps UUIDs readable, starts names with a letter, and hashes what does not fit", () => {
    expect(appSlug(APP)).toBe(`a${APP}`);
    expect(appSlug("contract-1-2")).toBe("contract-1-2");
    expect(appSlug("Has_Underscore")).toMatch(/^a[0-9a-f]{20}$/);
    expect(deploymentName(APP, "web")).toBe(`a${APP}-web`);
    expect(deploymentName(APP, "Web")).not.toBe(deploymentName(APP, "web"));
    expect(teamNamespace("berth-team-", "0d9c-x")).toBe("berth-team-0d9c-x");
    expect(() => teamNamespace("berth-team-", "bad/id")).toThrow(/label value/);
  });

  it("names config Secrets by content", () => {
    expect(envSecretName(APP, { A: "1", B: "2" })).toBe(envSecretName(APP, { B: "2", A: "1" }));
    expect(envSecretName(APP, { A: "1" })).not.toBe(envSecretName(APP, { A: "2" }));
  });
});

describe("deployment", () => {
  const web = any(deployment(input(), desired().processes[0]!));
  const pod = web.spec.template.spec;
  const c = pod.containers[0];

  it("runs the run image by digest under the restricted profile", () => {
    expect(c.image).toBe(`r:5000/berth/${APP}@sha256:${"b".repeat(64)}`);
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: { type: "RuntimeDefault" } });
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, readOnlyRootFilesystem: true, runAsNonRoot: true });
    expect(c.volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }]);
    expect(pod.volumes[0].emptyDir).toEqual({ medium: "Memory", sizeLimit: "512Mi" });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks).toBe(false);
    expect(pod.terminationGracePeriodSeconds).toBe(3);
  });

  it("is start-first, gated for its dyno name, and selects dynos of one type only", () => {
    expect(web.spec.strategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    expect(web.spec.replicas).toBe(2);
    expect(pod.schedulingGates).toEqual([{ name: "berth.dev/dyno" }]);
    expect(web.spec.selector.matchLabels).toEqual({ "berth.dev/app": APP, "berth.dev/process": "web", "berth.dev/role": "dyno" });
    expect(web.spec.template.metadata.labels).toMatchObject({ "app.kubernetes.io/managed-by": "berth", "berth.dev/release": "7", "berth.dev/size": "standard-1x" });
    expect(web.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "berth", "berth.dev/app": APP, "berth.dev/process": "web" });
  });

  it("passes PORT, DYNO from the pod's label, the command, and config vars from the Secret", () => {
    expect(c.env).toEqual([
      { name: "BERTH_COMMAND", value: "node server.js" },
      { name: "PORT", value: "5000" },
      { name: "DYNO", valueFrom: { fieldRef: { fieldPath: "metadata.labels['berth.dev/dyno']" } } },
    ]);
    expect(c.envFrom).toEqual([{ secretRef: { name: envSecretName(APP, desired().env) } }]);
    expect(c.command).toEqual(["/bin/sh", "-c", DYNO_INIT]);
  });

  it("probes readiness on PORT: TCP, or GET of the health-check path", () => {
    expect(c.readinessProbe).toMatchObject({ tcpSocket: { port: 5000 }, periodSeconds: 1 });
    const checked = any(deployment(input(desired({ healthCheckPath: "/health" })), desired().processes[0]!));
    expect(checked.spec.template.spec.containers[0].readinessProbe).toMatchObject({ httpGet: { path: "/health", port: 5000 } });
    const worker = any(deployment(input(), desired().processes[1]!));
    expect(worker.spec.template.spec.containers[0].readinessProbe).toBeUndefined();
    expect(worker.spec.template.spec.containers[0].ports).toBeUndefined();
  });

  it("sizes from the dyno size: memory request = limit, CPU by weight without a limit", () => {
    expect(c.resources).toEqual({ requests: { cpu: "1000m", memory: "512Mi" }, limits: { memory: "512Mi" } });
    expect(resources(DYNO_SIZES.eco!)).toEqual({ requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "256Mi" } });
  });

  it("changes its template hash with the release but not with the quantity", () => {
    const spec = (o: unknown) => any(o).spec.template.metadata.labels["berth.dev/spec"];
    const base = desired();
    expect(spec(deployment(input(base), { ...base.processes[0]!, quantity: 5 }))).toBe(spec(web));
    expect(spec(deployment(input(desired({ release: 8 })), base.processes[0]!))).not.toBe(spec(web));
    expect(spec(deployment(input(base), { ...base.processes[0]!, command: "node other.js" }))).not.toBe(spec(web));
  });

  it("puts a runtimeClassName only when the plan asks for one", () => {
    expect(pod.runtimeClassName).toBeUndefined();
    const g = any(deployment({ ...input(), runtimeClassName: "gvisor" }, desired().processes[0]!));
    expect(g.spec.template.spec.runtimeClassName).toBe("gvisor");
  });
});

describe("secret, service, one-off pod", () => {
  it("stores config vars in an immutable Secret", () => {
    const s = any(envSecret("ns", desired()));
    expect(s.immutable).toBe(true);
    expect(Buffer.from(s.data.TRICKY, "base64").toString()).toBe(`a "b" = c; $d`);
    expect(s.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "berth", "berth.dev/app": APP });
  });

  it("routes the web Service to web dynos on PORT", () => {
    const s = any(webService("ns", desired()));
    expect(s.spec.selector).toEqual({ "berth.dev/app": APP, "berth.dev/process": "web", "berth.dev/role": "dyno" });
    expect(s.spec.ports).toEqual([{ name: "web", port: 80, targetPort: 5000, protocol: "TCP" }]);
  });

  it("runs one-offs as bare pods that never restart and are not adopted by Deployments", () => {
    const p = any(oneOffPod(input(), "echo hi", { name: "x-run-1", dyno: "run.4821", timeoutMs: 10_000, size: DYNO_SIZES.eco! }));
    expect(p.spec.restartPolicy).toBe("Never");
    expect(p.spec.activeDeadlineSeconds).toBe(15);
    expect(p.spec.schedulingGates).toBeUndefined();
    expect(p.metadata.labels["berth.dev/role"]).toBe("one-off");
    expect(p.spec.containers[0].env).toContainEqual({ name: "DYNO", value: "run.4821" });
  });
});

describe("the dyno init (PID 1 of every container)", () => {
  const runInit = (command: string) => {
    const child = spawn("/bin/sh", ["-c", DYNO_INIT], { env: { ...process.env, BERTH_COMMAND: command }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    return { child, out: () => out };
  };

  it("exits with the command's status", async () => {
    const { child } = runInit("echo hi; exit 3");
    const [code] = await once(child, "exit");
    expect(code).toBe(3);
  });

  it("passes SIGTERM on to the command, which can shut down cleanly", async () => {
    const { child, out } = runInit(`trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done`);
    for (let i = 0; i < 100 && !out().includes("ready"); i++) await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(out()).toContain("got TERM");
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("stops a command that does not handle SIGTERM at once, with the signal's status", async () => {
    const { child } = runInit("sleep 30");
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(143);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
