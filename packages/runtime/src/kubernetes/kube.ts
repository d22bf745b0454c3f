/**
 * The slice of the Kubernetes API the runtime calls (STYLE.md §2), the object
 * shapes it reads and writes (only the fields it touches), and the one place where
 * API failures become Berth errors.
 *
 * `kubeFromConfig` (client.ts) implements `Kube` on @kubernetes/client-node; unit
 * tests implement it in memory (testing.ts).
 */
import type { Writable } from "node:stream";
import { Unavailable } from "@berth/core";

/** Timestamps arrive as strings from watches and as Dates from client-node's typed lists. */
export type Timestamp = string | Date;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: Timestamp;
  deletionTimestamp?: Timestamp;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface ContainerState {
  running?: { startedAt?: Timestamp };
  waiting?: { reason?: string; message?: string };
  terminated?: { exitCode: number; reason?: string; message?: string; startedAt?: Timestamp; finishedAt?: Timestamp };
}

export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  state?: ContainerState;
  lastState?: ContainerState;
}

export interface PodCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface Pod extends KubeObject {
  spec?: { schedulingGates?: { name: string }[]; containers?: { name: string }[]; nodeName?: string };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: PodCondition[];
    containerStatuses?: ContainerStatus[];
  };
}

export interface Endpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  targetRef?: { kind?: string; name?: string; namespace?: string; uid?: string };
}

export interface EndpointSlice extends KubeObject {
  addressType?: string;
  endpoints?: Endpoint[] | null;
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
}

export interface Deployment extends KubeObject {
  spec?: { replicas?: number; template?: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: unknown } } & Record<string, unknown>;
  status?: { observedGeneration?: number; replicas?: number; updatedReplicas?: number; availableReplicas?: number; readyReplicas?: number };
}

export interface ReplicaSet extends KubeObject {
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export interface KubeEvent extends KubeObject {
  reason?: string;
  message?: string;
  type?: string;
  count?: number;
  involvedObject?: { kind?: string; name?: string; namespace?: string; uid?: string };
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export interface ListQuery {
  apiVersion: string;
  kind: string;
  /** Omitted: across all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface LogOptions {
  follow?: boolean;
  timestamps?: boolean;
  sinceTime?: string;
  limitBytes?: number;
  tailLines?: number;
}

/** The Kubernetes API as the runtime uses it. */
export interface Kube {
  /** Server-side apply: PATCH application/apply-patch+yaml with `fieldManager`, force. */
  apply<T extends KubeObject>(obj: T, fieldManager: string): Promise<T>;
  /** undefined when the object does not exist. */
  read<T extends KubeObject>(ref: ObjectRef): Promise<T | undefined>;
  list<T extends KubeObject>(q: ListQuery): Promise<{ items: T[]; resourceVersion: string }>;
  /** false when the object was already gone. */
  delete(ref: ObjectRef, opts?: { gracePeriodSeconds?: number; propagationPolicy?: "Background" | "Foreground" }): Promise<boolean>;
  /** JSON patch of a pod (naming and ungating pods). */
  patchPod(namespace: string, name: string, ops: unknown[]): Promise<void>;
  /** PATCH the deployments/scale subresource. */
  scaleDeployment(namespace: string, name: string, replicas: number): Promise<void>;
  /**
   * Starts a watch of `path` (e.g. /api/v1/pods). Events arrive in order; `onDone`
   * is called once when the stream ends (err undefined: closed normally). Returns a stopper.
   */
  watch(
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
    onDone: (err?: unknown) => void,
  ): Promise<() => void>;
  /** Streams a container's log into `sink`, which is ended when the log ends or the stream breaks. Returns a stopper. */
  log(namespace: string, pod: string, container: string, sink: Writable, opts: LogOptions): Promise<() => void>;
  /** The API server's /readyz. */
  readyz(): Promise<boolean>;
}

/** An answer of the API server other than success (4xx that are not the platform's fault to hide). */
export class KubeError extends Error {
  readonly code: number;
  readonly reason: string | undefined;
  constructor(code: number, message: string, reason?: string) {
    super(message);
    this.name = "KubeError";
    this.code = code;
    this.reason = reason;
  }
}

export function isKubeError(e: unknown, code?: number): e is KubeError {
  return e instanceof KubeError && (code === undefined || e.code === code);
}

/**
 * Turns whatever a client threw into KubeError (the API server answered 4xx) or
 * Unavailable (unreachable, timed out, 5xx, 429): callers never mistake a dead
 * API server for an empty cluster.
 */
export function kubeFailure(what: string, e: unknown): Error {
  if (e instanceof KubeError || e instanceof Unavailable) return e;
  const code = numeric((e as { code?: unknown })?.code) ?? numeric((e as { statusCode?: unknown })?.statusCode);
  const body = (e as { body?: unknown })?.body;
  const status = parseStatus(body);
  if (code !== undefined && code >= 400 && code < 500 && code !== 429) {
    return new KubeError(code, `${what}: ${status?.message ?? `HTTP ${code}`}`, status?.reason);
  }
  const detail = status?.message ?? (e instanceof Error ? (causeMessage(e) ?? e.message) : String(e));
  return new Unavailable(`Kubernetes API unavailable (${what}): ${detail}`, e);
}

function numeric(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function parseStatus(body: unknown): { message?: string; reason?: string } | undefined {
  let b = body;
  if (typeof body === "string") {
    try {
      b = JSON.parse(body);
    } catch {
      return body ? { message: body } : undefined;
    }
  }
  if (b && typeof b === "object") {
    const o = b as { message?: unknown; reason?: unknown };
    return { ...(typeof o.message === "string" ? { message: o.message } : {}), ...(typeof o.reason === "string" ? { reason: o.reason } : {}) };
  }
  return undefined;
}

function causeMessage(e: Error): string | undefined {
  const c = (e as { cause?: unknown }).cause;
  if (c instanceof Error) return `${e.message}: ${causeMessage(c) ?? c.message}`;
  return undefined;
}

export function toMs(t: Timestamp | undefined): number | undefined {
  if (t === undefined || t === null) return undefined;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

export function refOf(o: KubeObject): ObjectRef {
  return { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}) };
}
