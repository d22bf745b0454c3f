/**
 * How an app image gets an operating system on Kubernetes.
 *
 * The builder's images hold only /workspace and /layers: no /bin/sh, no libc. The
 * local runtime binds the host's /usr; a pod cannot. So before a deploy the runtime
 * writes a *run image* into the registry: a new manifest whose layers are the base
 * image's layers followed by the app's, with a config that merges both (the app's
 * launch env wins; PATH keeps both). Only the config and the manifest are uploaded
 * (a few KB): layers are shared by digest, and base layers are cross-repository
 * mounted into the app's repository. The result depends only on (base digest, app
 * digest), so it is computed once per pair and a new base (a security fix) gives a
 * new run image on the next deploy: a rebase, without rebuilding.
 *
 * The alternative, an `image` volume (KEP-4639, beta and on by default in 1.35),
 * needs containerd >= 2.1; containerd 1.6 (Debian 12, the test cluster) ignores the
 * field and fails the container with `failed to mkdir ""`.
 */
import { createHash } from "node:crypto";
import { Invalid, Unavailable } from "@berth/core";
import type { ImageRef } from "../port.ts";

export type FetchLike = (url: string, init?: RequestInit & { duplex?: "half" }) => Promise<Response>;

export interface RegistryOptions {
  /** host[:port] the runtime pushes run images to; pods pull from the same name. */
  host: string;
  /** Plain HTTP (a registry on loopback). */
  insecure?: boolean;
  /** HTTP Basic credentials, if the registry wants them. */
  credentials?: { username: string; password: string };
}

export interface RunImage {
  /** What pods run: <host>/<repository>@sha256:… (base layers + app layers). */
  reference: string;
  /** The builder's image it was made from. */
  appImage: string;
}

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string };
}
interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  manifests?: Descriptor[];
}
interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: { Env?: string[]; WorkingDir?: string; User?: string; Cmd?: string[]; Entrypoint?: string[]; Labels?: Record<string, string> };
  rootfs: { type: string; diff_ids: string[] };
}

export interface ParsedRef {
  host: string;
  repository: string;
  /** tag or sha256:… */
  reference: string;
}

/** "127.0.0.1:5100/berth/app@sha256:…" or "berth/base:local" (host defaulted). */
export function parseReference(ref: string, defaultHost: string): ParsedRef {
  let rest = ref;
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon > rest.lastIndexOf("/")) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : "";
  const hasHost = first !== "" && (first.includes(".") || first.includes(":") || first === "localhost");
  return { host: hasHost ? first : defaultHost, repository: hasHost ? rest.slice(slash + 1) : rest, reference };
}

/** The registry reference of a built image, whatever form the deployer hands over. */
export function registryReferenceOf(image: ImageRef): string {
  if (image.kind === "registry") return image.reference;
  // The builder's record is a layout with the pushed reference beside it (services/builder/src/worker.ts).
  const pushed = (image as { registryReference?: unknown }).registryReference;
  if (image.kind === "layout" && typeof pushed === "string" && pushed) return pushed;
  throw new Invalid("The Kubernetes runtime runs images from a registry: the builder must push its images (configure a registry).");
}

export class RunImages {
  readonly #registry: RegistryOptions;
  readonly #base: ParsedRef;
  readonly #fetch: FetchLike;
  readonly #made = new Map<string, RunImage>();

  constructor(registry: RegistryOptions, baseImage: string, fetchImpl: FetchLike = fetch) {
    this.#registry = registry;
    this.#base = parseReference(baseImage, registry.host);
    this.#fetch = fetchImpl;
    if (this.#base.host !== registry.host) {
      throw new Invalid(`the base image ${baseImage} must live in the registry ${registry.host}: run images share its layers by cross-repository mounts`);
    }
  }

  /** The run image of `image` (made and pushed unless this process already did). */
  async resolve(image: ImageRef): Promise<RunImage> {
    const appImage = registryReferenceOf(image);
    const app = parseReference(appImage, this.#registry.host);
    if (app.host !== this.#registry.host) throw new Invalid(`image ${appImage} is not in the registry ${this.#registry.host}`);
    if (!app.reference.startsWith("sha256:")) throw new Invalid(`image ${appImage} must be referenced by digest`);
    const base = await this.#manifest(this.#base.repository, this.#base.reference);
    const key = `${appImage}|${base.digest}`;
    const cached = this.#made.get(key);
    if (cached) return cached;

    const appManifest = await this.#manifest(app.repository, app.reference);
    const [baseConfig, appConfig] = await Promise.all([
      this.#json<ImageConfig>(this.#base.repository, base.manifest.config.digest),
      this.#json<ImageConfig>(app.repository, appManifest.manifest.config.digest),
    ]);
    const config = mergeConfigs(baseConfig, appConfig, base.digest, appManifest.digest);
    const configBytes = Buffer.from(JSON.stringify(config));
    const configDigest = sha256(configBytes);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: configBytes.length },
      layers: [...base.manifest.layers, ...appManifest.manifest.layers].map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const digest = sha256(manifestBytes);

    if (app.repository !== this.#base.repository) {
      for (const l of base.manifest.layers) await this.#mount(app.repository, l.digest, this.#base.repository);
    }
    await this.#putBlob(app.repository, configBytes, configDigest);
    // Tagged, so that a registry garbage collection keeps it while deployed.
    const tag = `run-${hex(appManifest.digest).slice(0, 16)}-${hex(base.digest).slice(0, 12)}`;
    await this.#request("PUT", `/v2/${app.repository}/manifests/${tag}`, { body: new Uint8Array(manifestBytes), headers: { "content-type": OCI_MANIFEST } }, [201]);
    const made = { reference: `${this.#registry.host}/${app.repository}@${digest}`, appImage };
    this.#made.set(key, made);
    return made;
  }

  /** The manifest of `reference` (a platform's manifest when it is an index), and its digest. */
  async #manifest(repository: string, reference: string): Promise<{ manifest: Manifest; digest: string }> {
    const res = await this.#request("GET", `/v2/${repository}/manifests/${reference}`, { headers: { accept: ACCEPT } }, [200]);
    const bytes = Buffer.from(await res.arrayBuffer());
    const digest = sha256(bytes);
    if (reference.startsWith("sha256:") && digest !== reference) throw new Unavailable(`registry answered ${repository}@${reference} with content of digest ${digest}`);
    const m = JSON.parse(bytes.toString("utf8")) as Manifest;
    const type = m.mediaType ?? res.headers.get("content-type") ?? "";
    if (type === OCI_INDEX || type === DOCKER_LIST || m.manifests) {
      const pick = m.manifests?.find((d) => d.platform?.os === "linux" && d.platform?.architecture === "amd64") ?? m.manifests?.[0];
      if (!pick) throw new Invalid(`image ${repository}:${reference} is an empty index`);
      return this.#manifest(repository, pick.digest);
    }
    return { manifest: m, digest };
  }

  async #json<T>(repository: string, digest: string): Promise<T> {
    const res = await this.#request("GET", `/v2/${repository}/blobs/${digest}`, {}, [200]);
    const bytes = Buffer.from(await res.arrayBuffer());
    if (sha256(bytes) !== digest) throw new Unavailable(`registry answered blob ${digest} of ${repository} with other content`);
    return JSON.parse(bytes.toString("utf8")) as T;
  }

  async #has(repository: string, digest: string): Promise<boolean> {
    const res = await this.#request("HEAD", `/v2/${repository}/blobs/${digest}`, {}, [200, 404]);
    return res.status === 200;
  }

  async #mount(repository: string, digest: string, from: string): Promise<void> {
    if (await this.#has(repository, digest)) return;
    const res = await this.#request("POST", `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, {}, [201, 202]);
    if (res.status === 201) return;
    // The registry opened an upload instead of mounting: copy the blob through.
    const src = await this.#request("GET", `/v2/${from}/blobs/${digest}`, {}, [200]);
    await this.#finishUpload(res, digest, src.body!, Number(src.headers.get("content-length") ?? "0"));
  }

  async #putBlob(repository: string, bytes: Buffer, digest: string): Promise<void> {
    if (await this.#has(repository, digest)) return;
    const res = await this.#request("POST", `/v2/${repository}/blobs/uploads/`, {}, [202]);
    await this.#finishUpload(res, digest, new Uint8Array(bytes), bytes.length);
  }

  async #finishUpload(started: Response, digest: string, body: BodyInit, length: number): Promise<void> {
    const location = started.headers.get("location");
    if (!location) throw new Unavailable("registry opened an upload without a Location");
    const url = new URL(location, this.#origin());
    url.searchParams.set("digest", digest);
    await this.#request("PUT", url.toString(), { body, headers: { "content-type": "application/octet-stream", ...(length ? { "content-length": String(length) } : {}) }, duplex: "half" }, [201]);
  }

  #origin(): string {
    return `${this.#registry.insecure ? "http" : "https"}://${this.#registry.host}`;
  }

  async #request(method: string, pathOrUrl: string, init: RequestInit & { duplex?: "half" }, ok: number[]): Promise<Response> {
    const url = pathOrUrl.startsWith("http") ? pathOrUrl : this.#origin() + pathOrUrl;
    const headers = new Headers(init.headers);
    const c = this.#registry.credentials;
    if (c) headers.set("authorization", `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`);
    let res: Response;
    try {
      res = await this.#fetch(url, { ...init, method, headers, signal: AbortSignal.timeout(120_000) });
    } catch (e) {
      throw new Unavailable(`registry ${this.#registry.host} unreachable (${method} ${new URL(url).pathname})`, e);
    }
    if (!ok.includes(res.status)) {
      const text = await res.text().catch(() => "");
      if (res.status === 404 && method === "GET") throw new Invalid(`image not found in the registry: ${new URL(url).pathname}`);
      throw new Unavailable(`registry ${this.#registry.host} answered ${res.status} to ${method} ${new URL(url).pathname}: ${text.slice(0, 200)}`);
    }
    return res;
  }
}

/** Base config, then the app's on top: its Env wins (PATH keeps the base's entries after the app's). */
export function mergeConfigs(base: ImageConfig, app: ImageConfig, baseDigest: string, appDigest: string): ImageConfig {
  const env = new Map<string, string>();
  for (const kv of [...(base.config?.Env ?? []), ...(app.config?.Env ?? [])]) {
    const eq = kv.indexOf("=");
    if (eq <= 0) continue;
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (k === "PATH" && env.has("PATH")) {
      const parts = v.split(":");
      for (const p of env.get("PATH")!.split(":")) if (!parts.includes(p)) parts.push(p);
      env.set("PATH", parts.join(":"));
    } else {
      env.set(k, v);
    }
  }
  return {
    architecture: base.architecture ?? app.architecture ?? "amd64",
    os: base.os ?? "linux",
    config: {
      Env: [...env].map(([k, v]) => `${k}=${v}`),
      WorkingDir: app.config?.WorkingDir ?? "/workspace",
      User: app.config?.User ?? "65534:65534",
      ...(app.config?.Cmd ? { Cmd: app.config.Cmd } : {}),
      Labels: { ...base.config?.Labels, ...app.config?.Labels, "dev.berth.base": baseDigest, "dev.berth.app-image": appDigest },
    },
    rootfs: { type: "layers", diff_ids: [...base.rootfs.diff_ids, ...app.rootfs.diff_ids] },
  };
}

function sha256(b: Buffer): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

function hex(digest: string): string {
  return digest.slice(digest.indexOf(":") + 1);
}
