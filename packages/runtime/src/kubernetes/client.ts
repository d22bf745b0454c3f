/**
 * `Kube` on @kubernetes/client-node. Each method uses one client-node call, typed
 * below as the slice of that class the runtime needs (STYLE.md §2); the typed
 * objects client-node returns are handed on as plain object shapes (kube.ts).
 */
import type { Readable, Writable } from "node:stream";
import { AppsV1Api, CoreV1Api, Health, KubeConfig, KubernetesObjectApi, Log, PatchStrategy, Watch } from "@kubernetes/client-node";
import { Unavailable } from "@berth/core";
import { KubeError, kubeFailure, refOf, type Kube, type KubeObject, type ListQuery, type LogOptions, type ObjectRef, type WatchEventType } from "./kube.ts";

/** The subset of client-node's KubernetesObjectApi used here. */
export interface ObjectApiSlice {
  patch(spec: object, pretty?: string, dryRun?: string, fieldManager?: string, force?: boolean, patchStrategy?: PatchStrategy): Promise<object>;
  read(spec: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): Promise<object>;
  list(apiVersion: string, kind: string, namespace?: string, pretty?: string, exact?: boolean, exportt?: boolean, fieldSelector?: string, labelSelector?: string): Promise<{ metadata?: { resourceVersion?: string }; items: object[] }>;
  delete(spec: object, pretty?: string, dryRun?: string, gracePeriodSeconds?: number, orphanDependents?: boolean, propagationPolicy?: string): Promise<unknown>;
}
/** The subset of CoreV1Api used here. */
export interface CoreApiSlice {
  patchNamespacedPod(param: { name: string; namespace: string; body: unknown }): Promise<unknown>;
}
/** The subset of AppsV1Api used here. */
export interface AppsApiSlice {
  patchNamespacedDeploymentScale(param: { name: string; namespace: string; body: unknown }): Promise<unknown>;
}
export interface WatchSlice {
  watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: (phase: string, apiObj: any) => void, done: (err: any) => void): Promise<AbortController>;
}
export interface LogSlice {
  log(namespace: string, podName: string, containerName: string, stream: Writable, options?: LogOptions): Promise<AbortController>;
}
export interface HealthSlice {
  readyz(opts: { signal?: AbortSignal }): Promise<boolean>;
}

export interface ClientSlices {
  objects: ObjectApiSlice;
  core: CoreApiSlice;
  apps: AppsApiSlice;
  watch: WatchSlice;
  log: LogSlice;
  health: HealthSlice;
}

/** Builds the slices from a kubeconfig file path (or a loaded KubeConfig). */
export function clientSlices(kubeconfig: string | KubeConfig): ClientSlices {
  let kc: KubeConfig;
  if (typeof kubeconfig === "string") {
    kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
  } else {
    kc = kubeconfig;
  }
  return {
    objects: KubernetesObjectApi.makeApiClient(kc) as unknown as ObjectApiSlice,
    core: kc.makeApiClient(CoreV1Api) as unknown as CoreApiSlice,
    apps: kc.makeApiClient(AppsV1Api) as unknown as AppsApiSlice,
    watch: new Watch(kc),
    log: new Log(kc),
    health: new Health(kc),
  };
}

/** A request that hangs is as good as an API server that is down. */
const REQUEST_TIMEOUT_MS = 30_000;

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Unavailable(`Kubernetes API unavailable (${what}): no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)), REQUEST_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    throw kubeFailure(what, e);
  } finally {
    clearTimeout(timer);
  }
}

const describe = (r: ObjectRef) => `${r.kind} ${r.namespace ? r.namespace + "/" : ""}${r.name}`;

export function kubeFromSlices(s: ClientSlices): Kube {
  return {
    async apply<T extends KubeObject>(obj: T, fieldManager: string): Promise<T> {
      return (await call(`apply ${describe(refOf(obj))}`, () => s.objects.patch(obj, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply))) as T;
    },
    async read<T extends KubeObject>(ref: ObjectRef): Promise<T | undefined> {
      try {
        const o = (await call(`read ${describe(ref)}`, () =>
          s.objects.read({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } }),
        )) as T;
        return { ...o, apiVersion: ref.apiVersion, kind: ref.kind };
      } catch (e) {
        if (e instanceof KubeError && e.code === 404) return undefined;
        throw e;
      }
    },
    async list<T extends KubeObject>(q: ListQuery): Promise<{ items: T[]; resourceVersion: string }> {
      const r = await call(`list ${q.kind}${q.namespace ? " in " + q.namespace : ""}`, () =>
        s.objects.list(q.apiVersion, q.kind, q.namespace, undefined, undefined, undefined, q.fieldSelector, q.labelSelector),
      );
      // List items carry no apiVersion/kind on the wire.
      return { items: r.items.map((i) => ({ ...(i as T), apiVersion: q.apiVersion, kind: q.kind })), resourceVersion: r.metadata?.resourceVersion ?? "" };
    },
    async delete(ref, opts = {}): Promise<boolean> {
      try {
        await call(`delete ${describe(ref)}`, () =>
          s.objects.delete(
            { apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } },
            undefined,
            undefined,
            opts.gracePeriodSeconds,
            undefined,
            opts.propagationPolicy,
          ),
        );
        return true;
      } catch (e) {
        if (e instanceof KubeError && e.code === 404) return false;
        throw e;
      }
    },
    async patchPod(namespace, name, ops) {
      // The generated client sends the first content type it knows, application/json-patch+json.
      await call(`patch Pod ${namespace}/${name}`, () => s.core.patchNamespacedPod({ name, namespace, body: ops }));
    },
    async scaleDeployment(namespace, name, replicas) {
      await call(`scale Deployment ${namespace}/${name}`, () =>
        s.apps.patchNamespacedDeploymentScale({ name, namespace, body: [{ op: "replace", path: "/spec/replicas", value: replicas }] }),
      );
    },
    async watch(path, params, onEvent, onDone) {
      const controller = await s.watch.watch(
        path,
        params,
        (phase, obj) => onEvent(phase as WatchEventType, obj as KubeObject),
        (err: unknown) => onDone(err ?? undefined),
      );
      return () => controller.abort();
    },
    async log(namespace, pod, container, sink, opts) {
      // client-node pipes the response into `sink` without listening for the response's
      // errors: an abort (ours) or a broken connection would be an uncaught exception.
      // Listen, and end the sink, so that readers see the end of the log either way.
      sink.once("pipe", (src: Readable) => src.on("error", () => sink.end()));
      const controller = await call(`log of ${namespace}/${pod}`, () => s.log.log(namespace, pod, container, sink, opts));
      return () => controller.abort();
    },
    async readyz() {
      try {
        return await s.health.readyz({ signal: AbortSignal.timeout(5000) });
      } catch {
        return false;
      }
    },
  };
}

/** `Kube` for a kubeconfig file or object. */
export function kubeFromConfig(kubeconfig: string | KubeConfig): Kube {
  return kubeFromSlices(clientSlices(kubeconfig));
}
