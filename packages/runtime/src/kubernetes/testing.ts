/**
 * An in-memory `Kube` for unit tests: objects by kind/namespace/name, label
 * selection, resourceVersions, watches the test drives, and an API server that can
 * be "down". It models the API, not the controllers: nothing creates pods.
 */
import { createHash } from "node:crypto";
import type { Writable } from "node:stream";
import { kubeFailure, KubeError, type Kube, type KubeObject, type ListQuery, type LogOptions, type ObjectRef, type WatchEventType } from "./kube.ts";

export interface FakeWatch {
  path: string;
  params: Record<string, string | number | boolean | undefined>;
  emit(type: WatchEventType, obj: KubeObject): void;
  /** Ends the stream (err: broken). */
  end(err?: unknown): void;
  ended: boolean;
}

const objKey = (apiVersion: string, kind: string, namespace: string | undefined, name: string) => `${apiVersion}/${kind}/${namespace ?? ""}/${name}`;

/** "a=b,c" → predicate over labels (equality and existence, what Berth uses). */
export function matchesSelector(selector: string | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return true;
  return selector.split(",").every((term) => {
    const t = term.trim();
    if (!t) return true;
    const eq = t.indexOf("=");
    if (eq < 0) return t in labels;
    return labels[t.slice(0, eq)] === t.slice(eq + 1);
  });
}

export class FakeKube implements Kube {
  readonly objects = new Map<string, KubeObject>();
  readonly calls: string[] = [];
  readonly watches: FakeWatch[] = [];
  logLines = new Map<string, string[]>();
  /** While true every call fails as a refused connection would. */
  down = false;
  /** Called after every apply / pod patch: tests play the controllers and the kubelet here. */
  onApply: ((o: KubeObject) => void) | undefined;
  onPodPatched: ((o: KubeObject) => void) | undefined;
  #rv = 100;
  #uid = 0;

  rv(): string {
    return String(this.#rv);
  }

  #check(what: string): void {
    if (this.down) throw kubeFailure(what, Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" }));
  }

  /** Puts an object as if another client created it (`quiet`: no watch sees it, as while disconnected). */
  put<T extends KubeObject>(o: T, opts: { quiet?: boolean } = {}): T {
    const stored = structuredClone(o);
    stored.metadata.resourceVersion = String(++this.#rv);
    stored.metadata.uid ??= `uid-${++this.#uid}`;
    stored.metadata.creationTimestamp ??= new Date(1_700_000_000_000 + this.#uid * 1000).toISOString();
    const k = objKey(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
    const existed = this.objects.has(k);
    this.objects.set(k, stored);
    if (!opts.quiet) this.#notify(existed ? "MODIFIED" : "ADDED", stored);
    return stored;
  }

  /** Removes an object as if another client (or the garbage collector) deleted it. */
  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): boolean {
    const k = objKey(apiVersion, kind, namespace, name);
    const o = this.objects.get(k);
    if (!o) return false;
    this.objects.delete(k);
    this.#notify("DELETED", { ...o, metadata: { ...o.metadata, resourceVersion: String(++this.#rv) } });
    return true;
  }

  /** Open watches see changes of their kind, as the API server would send them. */
  #notify(type: WatchEventType, o: KubeObject): void {
    const plural = `/${o.kind.toLowerCase()}s`;
    for (const w of this.watches) {
      if (w.ended || !w.path.endsWith(plural)) continue;
      if (!matchesSelector(w.params.labelSelector as string | undefined, o.metadata.labels)) continue;
      w.emit(type, structuredClone(o));
    }
  }

  find(apiVersion: string, kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(objKey(apiVersion, kind, namespace, name));
  }

  async apply<T extends KubeObject>(obj: T, fieldManager: string): Promise<T> {
    this.#check("apply");
    this.calls.push(`apply ${obj.kind} ${obj.metadata.namespace ?? ""}/${obj.metadata.name} by ${fieldManager}`);
    const existing = this.find(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name);
    const merged = existing ? { ...existing, ...structuredClone(obj), metadata: { ...existing.metadata, ...structuredClone(obj.metadata) } } : structuredClone(obj);
    const specChanged = JSON.stringify((existing as { spec?: unknown } | undefined)?.spec) !== JSON.stringify((merged as { spec?: unknown }).spec);
    merged.metadata.generation = (existing?.metadata.generation ?? 0) + (specChanged || !existing ? 1 : 0);
    const stored = this.put(merged) as T;
    this.onApply?.(stored);
    return stored;
  }

  async read<T extends KubeObject>(ref: ObjectRef): Promise<T | undefined> {
    this.#check("read");
    const o = this.find(ref.apiVersion, ref.kind, ref.namespace, ref.name);
    return o ? (structuredClone(o) as T) : undefined;
  }

  async list<T extends KubeObject>(q: ListQuery): Promise<{ items: T[]; resourceVersion: string }> {
    this.#check("list");
    this.calls.push(`list ${q.kind}${q.namespace ? " " + q.namespace : ""}${q.labelSelector ? " " + q.labelSelector : ""}`);
    const items = [...this.objects.values()].filter(
      (o) => o.apiVersion === q.apiVersion && o.kind === q.kind && (q.namespace === undefined || o.metadata.namespace === q.namespace) && matchesSelector(q.labelSelector, o.metadata.labels),
    );
    return { items: structuredClone(items) as T[], resourceVersion: this.rv() };
  }

  async delete(ref: ObjectRef): Promise<boolean> {
    this.#check("delete");
    this.calls.push(`delete ${ref.kind} ${ref.namespace ?? ""}/${ref.name}`);
    return this.remove(ref.apiVersion, ref.kind, ref.namespace, ref.name);
  }

  async patchPod(namespace: string, name: string, ops: unknown[]): Promise<void> {
    this.#check("patch");
    const pod = this.find("v1", "Pod", namespace, name);
    if (!pod) throw new KubeError(404, "not found");
    const next = structuredClone(pod) as KubeObject & { spec?: { schedulingGates?: unknown } };
    for (const raw of ops) {
      const op = raw as { op: string; path: string; value?: unknown };
      if (op.op === "test") {
        if (op.path === "/metadata/resourceVersion" && op.value !== pod.metadata.resourceVersion) throw new KubeError(422, "test failed");
      } else if (op.path.startsWith("/metadata/labels/")) {
        next.metadata.labels = { ...next.metadata.labels, [op.path.slice("/metadata/labels/".length).replace("~1", "/")]: op.value as string };
      } else if (op.path === "/spec/schedulingGates") {
        if (op.op === "remove") delete next.spec!.schedulingGates;
        else next.spec!.schedulingGates = op.value;
      }
    }
    this.calls.push(`patch Pod ${namespace}/${name}`);
    this.onPodPatched?.(this.put(next));
  }

  async scaleDeployment(namespace: string, name: string, replicas: number): Promise<void> {
    this.#check("scale");
    const d = this.find("apps/v1", "Deployment", namespace, name) as (KubeObject & { spec: { replicas?: number } }) | undefined;
    if (!d) throw new KubeError(404, "not found");
    this.calls.push(`scale ${namespace}/${name} ${replicas}`);
    this.onApply?.(this.put({ ...d, spec: { ...d.spec, replicas } }));
  }

  async watch(
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
    onDone: (err?: unknown) => void,
  ): Promise<() => void> {
    if (this.down) {
      onDone(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
      return () => {};
    }
    const w: FakeWatch = {
      path,
      params,
      ended: false,
      emit: (type, obj) => {
        if (!w.ended) onEvent(type, obj);
      },
      end: (err) => {
        if (w.ended) return;
        w.ended = true;
        onDone(err);
      },
    };
    this.watches.push(w);
    return () => {
      w.ended = true;
    };
  }

  /** The watch currently open on `path` (the last one). */
  openWatch(path: string): FakeWatch | undefined {
    return [...this.watches].reverse().find((w) => w.path === path && !w.ended);
  }

  async log(namespace: string, pod: string, _container: string, sink: Writable, _opts: LogOptions): Promise<() => void> {
    this.#check("log");
    for (const l of this.logLines.get(`${namespace}/${pod}`) ?? []) sink.write(l + "\n");
    sink.end();
    return () => {};
  }

  async readyz(): Promise<boolean> {
    return !this.down;
  }
}

/** An OCI registry in memory (the distribution API subset RunImages uses), as a fetch function. */
export function fakeRegistry(host = "registry.test:5000") {
  const blobs = new Map<string, Map<string, Buffer>>();
  const manifests = new Map<string, { body: Buffer; type: string }>();
  const requests: string[] = [];
  const repo = (r: string) => blobs.get(r) ?? blobs.set(r, new Map()).get(r)!;
  const digest = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
  const put = (r: string, body: Buffer) => {
    const d = digest(body);
    repo(r).set(d, body);
    return d;
  };
  let uploads = 0;
  const fetchImpl = async (url: string, init: RequestInit = {}): Promise<Response> => {
    const u = new URL(url);
    const method = init.method ?? "GET";
    requests.push(`${method} ${u.pathname}${u.search}`);
    let m = /^\/v2\/(.+)\/blobs\/uploads\/(.*)$/.exec(u.pathname);
    if (m) {
      const [, r] = m;
      if (method === "POST") {
        const from = u.searchParams.get("from");
        const mount = u.searchParams.get("mount");
        if (from && mount && blobs.get(from)?.has(mount)) {
          repo(r!).set(mount, blobs.get(from)!.get(mount)!);
          return new Response(null, { status: 201 });
        }
        return new Response(null, { status: 202, headers: { location: `/v2/${r}/blobs/uploads/u${++uploads}` } });
      }
      if (method === "PUT") {
        const body = Buffer.from(await new Response(init.body as BodyInit).arrayBuffer());
        if (digest(body) !== u.searchParams.get("digest")) return new Response("digest mismatch", { status: 400 });
        put(r!, body);
        return new Response(null, { status: 201 });
      }
    }
    m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(u.pathname);
    if (m) {
      const [, r, what, ref] = m;
      if (what === "blobs") {
        const b = blobs.get(r!)?.get(ref!);
        if (!b) return new Response("unknown blob", { status: 404 });
        return new Response(method === "HEAD" ? null : new Uint8Array(b), { status: 200, headers: { "content-length": String(b.length) } });
      }
      if (method === "PUT") {
        const body = Buffer.from(await new Response(init.body as BodyInit).arrayBuffer());
        const type = new Headers(init.headers).get("content-type") ?? "";
        manifests.set(`${r}@${digest(body)}`, { body, type });
        manifests.set(`${r}:${ref}`, { body, type });
        return new Response(null, { status: 201 });
      }
      const found = manifests.get(ref!.startsWith("sha256:") ? `${r}@${ref}` : `${r}:${ref}`);
      if (!found) return new Response("unknown manifest", { status: 404 });
      return new Response(new Uint8Array(found.body), { status: 200, headers: { "content-type": found.type } });
    }
    return new Response("not found", { status: 404 });
  };
  return {
    host,
    requests,
    fetch: fetchImpl,
    /** Stores an image (layers are opaque bytes here) and returns its reference by digest. */
    image(repository: string, layers: string[], config: Record<string, unknown>, tag = "latest"): { reference: string; digest: string } {
      const descs = layers.map((l) => {
        const b = Buffer.from(l);
        return { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: put(repository, b), size: b.length };
      });
      const cfg = Buffer.from(JSON.stringify({ ...config, rootfs: { type: "layers", diff_ids: layers.map((l) => digest(Buffer.from("diff:" + l))) } }));
      const manifest = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: put(repository, cfg), size: cfg.length }, layers: descs }),
      );
      const d = digest(manifest);
      manifests.set(`${repository}@${d}`, { body: manifest, type: "application/vnd.oci.image.manifest.v1+json" });
      manifests.set(`${repository}:${tag}`, { body: manifest, type: "application/vnd.oci.image.manifest.v1+json" });
      return { reference: `${host}/${repository}@${d}`, digest: d };
    },
    manifest(repository: string, ref: string): any {
      const m = manifests.get(ref.startsWith("sha256:") ? `${repository}@${ref}` : `${repository}:${ref}`);
      return m ? JSON.parse(m.body.toString()) : undefined;
    },
    blob(repository: string, d: string): Buffer | undefined {
      return blobs.get(repository)?.get(d);
    },
  };
}
