/**
 * An API server that cannot be reached is never an empty cluster: reads and writes
 * throw Unavailable and ready() answers false. Same credentials as the real cluster,
 * with the server's address pointed at a port nothing listens on.
 */
import { readFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Unavailable, silentLogger, systemClock } from "@berth/core";
import { afterAll, expect, test } from "vitest";
import { DYNO_SIZES } from "../../packages/runtime/src/port.ts";
import { createKubernetesRuntime } from "../../packages/runtime/src/kubernetes/index.ts";
import { BASE_IMAGE, KUBECONFIG, REGISTRY } from "./cluster.ts";

const dir = await mkdtemp(join(tmpdir(), "berth-k8s-down-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

test("an unreachable API server makes the runtime unready and its reads throw Unavailable", async () => {
  const config = (await readFile(KUBECONFIG, "utf8")).replace(/server: https:\/\/[^\s]+/, "server: https://127.0.0.1:1");
  const path = join(dir, "kubeconfig");
  await writeFile(path, config);
  const rt = createKubernetesRuntime({
    kubeconfig: path,
    namespacePrefix: "berth-down-",
    routerNamespace: "berth-system",
    registry: { host: REGISTRY, insecure: true },
    baseImage: BASE_IMAGE,
    clock: systemClock,
    logger: silentLogger,
    syncTimeoutMs: 1000,
  });
  try {
    expect(await rt.ready()).toBe(false);
    const t0 = Date.now();
    const err = await rt.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Unavailable);
    expect((err as Error).message).toMatch(/cannot follow .* in the cluster/);
    expect(Date.now() - t0).toBeLessThan(3000);
    await expect(rt.scale("some-app", "web", 1)).rejects.toBeInstanceOf(Unavailable);
    await expect(
      rt.apply({
        teamId: "t",
        appId: "a",
        appName: "a",
        release: 1,
        image: { kind: "registry", reference: `${REGISTRY}/berth/a@sha256:${"0".repeat(64)}`, digest: `sha256:${"0".repeat(64)}` },
        env: {},
        processes: [{ type: "web", command: "node server.js", quantity: 1, size: DYNO_SIZES.eco! }],
        bootTimeoutMs: 1000,
        graceMs: 1000,
      }),
    ).rejects.toBeInstanceOf(Unavailable);
  } finally {
    await rt.close();
  }
});
