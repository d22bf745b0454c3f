/**
 * The shared runtime contract (packages/runtime/src/contract.ts) against the real
 * single-node cluster: the Kubernetes runtime must behave as the local one does.
 *
 * Differences the harness declares: crash restarts follow the kubelet's backoff (the
 * first restart is immediate-ish, then 10 s, 20 s…, so the first two delays the
 * contract sees are ~1 s and 10 s); time is real; freeze is not supported (skipped by
 * the contract since canFreeze is false).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { silentLogger, systemClock, consoleLogger } from "@berth/core";
import { afterAll } from "vitest";
import { runtimeContract } from "../../packages/runtime/src/contract.ts";
import { createKubernetesRuntime, type KubernetesRuntime } from "../../packages/runtime/src/kubernetes/index.ts";
import { BASE_IMAGE, KUBECONFIG, REGISTRY, pushAppImage } from "./cluster.ts";

let rt: KubernetesRuntime | undefined;

afterAll(async () => {
  const cleanup = createKubernetesRuntime(options());
  await cleanup.removeTeam("contract");
  await cleanup.close();
});

/** BERTH_K8S_RUNTIME_KUBECONFIG: run the runtime with other credentials, e.g. the chart's service account (RBAC check). */
function options() {
  return {
    kubeconfig: process.env.BERTH_K8S_RUNTIME_KUBECONFIG ?? KUBECONFIG,
    namespacePrefix: "berth-ct-",
    routerNamespace: "berth-system",
    registry: { host: REGISTRY, insecure: true },
    baseImage: BASE_IMAGE,
    clock: systemClock,
    logger: process.env.BERTH_TEST_LOG ? consoleLogger({ test: "k8s-contract" }) : silentLogger,
  };
}

runtimeContract(
  "kubernetes",
  async () => {
    rt = createKubernetesRuntime(options());
    return {
      runtime: rt,
      advance: (ms) => sleep(ms),
      stopAll: async () => {
        for (const app of await rt!.apps()) await rt!.remove(app);
      },
      isolation: true,
      memoryLimit: true,
      backoffMs: [1000, 10_000],
      bootTimeoutMs: 60_000,
    };
  },
  (files) => pushAppImage(files),
);
