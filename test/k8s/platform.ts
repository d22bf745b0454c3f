/**
 * The whole platform in one test process, as test/harness/platform.ts wires it, but
 * on the real cluster: the Kubernetes runtime, and a builder that pushes every image
 * to the cluster's registry (127.0.0.1:5100). The router runs on this machine and
 * reaches pod IPs on the node's bridge.
 */
import { systemClock } from "@berth/core";
import { createKubernetesRuntime, type KubernetesRuntime } from "../../packages/runtime/src/kubernetes/index.ts";
import { startPlatform, type TestPlatform } from "../harness/platform.ts";
import { BASE_IMAGE, KUBECONFIG, REGISTRY } from "./cluster.ts";

export type K8sPlatform = TestPlatform<KubernetesRuntime>;

export function startK8sPlatform(opts: { namespacePrefix: string; log?: boolean }): Promise<K8sPlatform> {
  return startPlatform({
    ...(opts.log ? { log: true } : {}),
    // The Kubernetes runtime runs images from the registry only.
    registry: REGISTRY,
    // Pulling and starting pods is slower than starting a local process.
    bootTimeoutMs: 60_000,
    runtime: async ({ logger }) =>
      createKubernetesRuntime({
        kubeconfig: KUBECONFIG,
        namespacePrefix: opts.namespacePrefix,
        routerNamespace: "berth-system",
        registry: { host: REGISTRY, insecure: true },
        baseImage: BASE_IMAGE,
        clock: systemClock,
        logger: logger.child({ component: "runtime" }),
      }),
  });
}
