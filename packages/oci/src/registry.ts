/**
 * A client for the OCI Distribution API (distribution-spec spec.md), enough to push an
 * image from an OciLayout and read manifests and blobs back.
 *
 * Push order is the spec's: every blob (HEAD first; upload only what the registry lacks),
 * then the manifest, which the registry accepts only once all its blobs exist.
 *
 * Auth: the first 401 names the scheme. Bearer → a token from the challenge's realm
 * (HTTP Basic with the credentials, if any) for the scopes this session needs plus the
 * ones the challenge names, cached for the session; Basic → the credentials on every
 * request. Errors: network failures and 5xx are Unavailable (platform fault); 401 is
 * Unauthorized, 403 and insufficient_scope are Forbidden, each naming registry and action.
 */
import { createHash } from "node:crypto";
import { BerthError, Forbidden, Invalid, NotFound, Unauthorized, Unavailable } from "@berth/core";
import { assertDigest, assertTag, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, type Descriptor, type OciLayout } from "./layout.ts";

export interface RegistryCredentials {
  username: string;
  password: string;
}

/** The subset of fetch this client calls; pass a wrapper to observe or fake requests. */
export type FetchLike = (input: string | URL, init: RequestInit & { duplex?: "half" }) => Promise<Response>;

export interface RegistryTarget {
  /** host[:port], e.g. "127.0.0.1:5000". */
  registry: string;
  /** e.g. "team/app". */
  repository: string;
  /** Plain HTTP instead of HTTPS. */
  insecure?: boolean;
  credentials?: RegistryCredentials;
  fetch?: FetchLike;
  /** Timeout of each request that carries no blob data (default 30 s). */
  timeoutMs?: number;
}

export interface PushOptions extends RegistryTarget {
  /** Tag to push the manifest under; by digest only when omitted. */
  tag?: string;
  /** A repository on the same registry to try a cross-repository mount from before uploading. */
  mountFrom?: string;
  /** Blobs larger than this go up in PATCH chunks instead of one PUT (default 64 MiB). */
  chunkThreshold?: number;
  /** Size of each PATCH chunk (default 16 MiB). */
  chunkSize?: number;
  /** Blobs in flight at once (default 3). */
  concurrency?: number;
}

export interface PushResult {
  /** registry/repository@digest: what a runtime should pull. */
  reference: string;
  digest: string;
  tag?: string;
  /** Blobs sent, in manifest order (layers, then config). */
  uploadedBlobs: string[];
  /** Blobs the registry already had in the repository. */
  skippedBlobs: string[];
  /** Blobs mounted from `mountFrom` without upload. */
  mountedBlobs: string[];
  /** Bytes of blob data and manifest sent. */
  uploadedBytes: number;
}

export interface PulledManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  manifest: unknown;
}

const MIB = 1024 * 1024;
const MANIFEST_ACCEPT = [
  MEDIA_TYPE_MANIFEST,
  MEDIA_TYPE_INDEX,
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** Pushes the image `manifestDigest` of `layout` to `opts.repository`, uploading only missing blobs. */
export async function pushImage(layout: OciLayout, manifestDigest: string, opts: PushOptions): Promise<PushResult> {
  assertDigest(manifestDigest);
  if (opts.tag !== undefined) assertTag(opts.tag);
  if (opts.mountFrom !== undefined) assertRepository(opts.mountFrom);
  const chunkThreshold = opts.chunkThreshold ?? 64 * MIB;
  const chunkSize = opts.chunkSize ?? 16 * MIB;
  if (!(chunkSize > 0)) throw new Invalid(`chunkSize must be positive, got ${chunkSize}`);

  const manifestBytes = await layout.readBlob(manifestDigest);
  const manifest = JSON.parse(manifestBytes.toString("utf8")) as { mediaType?: string; config?: Descriptor; layers?: Descriptor[] };
  if (manifest.mediaType !== MEDIA_TYPE_MANIFEST || !manifest.config || !Array.isArray(manifest.layers)) {
    throw new Invalid(`${manifestDigest} is not an OCI image manifest (mediaType ${JSON.stringify(manifest.mediaType)})`);
  }
  const blobs = [...manifest.layers, manifest.config];
  for (const b of blobs) assertDigest(b.digest);

  const mountFrom = opts.mountFrom !== undefined && opts.mountFrom !== opts.repository ? opts.mountFrom : undefined;
  const session = new RegistrySession(opts, [`repository:${opts.repository}:pull,push`, ...(mountFrom ? [`repository:${mountFrom}:pull`] : [])]);
  const repoPath = `/v2/${opts.repository}`;

  const outcome = new Map<string, "uploaded" | "skipped" | "mounted">();
  let uploadedBytes = 0;
  const unique = [...new Map(blobs.map((b) => [b.digest, b])).values()];

  const pushBlob = async (blob: Descriptor): Promise<void> => {
    const head = await session.request("HEAD", `${repoPath}/blobs/${blob.digest}`);
    if (head.ok) {
      outcome.set(blob.digest, "skipped");
      return;
    }
    if (head.status !== 404) await session.fail(head, `check for blob ${blob.digest} in ${opts.repository}`);

    let location: URL;
    if (mountFrom) {
      const q = new URLSearchParams({ mount: blob.digest, from: mountFrom });
      const res = await session.request("POST", `${repoPath}/blobs/uploads/?${q}`, { headers: { "content-length": "0" } });
      if (res.status === 201) {
        await drain(res);
        outcome.set(blob.digest, "mounted");
        return;
      }
      // 202: the registry could not mount and opened an ordinary upload session instead.
      location = await session.uploadLocation(res, `start upload of ${blob.digest} to ${opts.repository}`);
    } else {
      const res = await session.request("POST", `${repoPath}/blobs/uploads/`, { headers: { "content-length": "0" } });
      location = await session.uploadLocation(res, `start upload of ${blob.digest} to ${opts.repository}`);
    }

    try {
      // A blob the registry lacks (and could not mount) must be in the layout.
      const localSize = await layout.blobSize(blob.digest).catch((e: unknown) => {
        if (e instanceof NotFound) return undefined;
        throw e;
      });
      if (localSize === undefined) {
        throw new BerthError("internal_error", `cannot push ${manifestDigest}: blob ${blob.digest} is neither in ${layout.dir} nor in ${opts.registry}/${opts.repository}`);
      }
      if (localSize !== blob.size) {
        throw new BerthError("internal_error", `cannot push ${manifestDigest}: the manifest gives blob ${blob.digest} ${blob.size} bytes, ${layout.dir} has ${localSize}`);
      }
      if (blob.size > chunkThreshold) {
        for (let start = 0; start < blob.size; start += chunkSize) {
          const end = Math.min(start + chunkSize, blob.size) - 1;
          const res = await session.request("PATCH", location, {
            headers: { "content-type": "application/octet-stream", "content-range": `${start}-${end}`, "content-length": String(end - start + 1) },
            body: () => layout.openBlob(blob.digest, { start, end }),
            long: true,
          });
          location = await session.uploadLocation(res, `upload bytes ${start}-${end} of ${blob.digest}`);
        }
        await session.expect(await session.request("PUT", withDigest(location, blob.digest), { headers: { "content-length": "0" } }), 201, `finish upload of ${blob.digest}`, blob.digest);
      } else {
        const res = await session.request("PUT", withDigest(location, blob.digest), {
          headers: { "content-type": "application/octet-stream", "content-length": String(blob.size) },
          body: () => layout.openBlob(blob.digest),
          long: true,
        });
        await session.expect(res, 201, `upload ${blob.digest} to ${opts.repository}`, blob.digest);
      }
    } catch (e) {
      // Best effort: release the registry's upload session; the original error matters more.
      await session.request("DELETE", location).then(drain, () => undefined);
      throw e;
    }
    uploadedBytes += blob.size;
    outcome.set(blob.digest, "uploaded");
  };

  await eachLimited(unique, Math.max(1, opts.concurrency ?? 3), pushBlob);

  const reference = opts.tag ?? manifestDigest;
  const res = await session.request("PUT", `${repoPath}/manifests/${reference}`, {
    headers: { "content-type": manifest.mediaType, "content-length": String(manifestBytes.length) },
    body: () => manifestBytes,
  });
  await session.expect(res, 201, `push manifest ${reference} to ${opts.repository}`, manifestDigest);
  uploadedBytes += manifestBytes.length;

  const having = (kind: string) => unique.filter((b) => outcome.get(b.digest) === kind).map((b) => b.digest);
  const result: PushResult = {
    reference: `${opts.registry}/${opts.repository}@${manifestDigest}`,
    digest: manifestDigest,
    uploadedBlobs: having("uploaded"),
    skippedBlobs: having("skipped"),
    mountedBlobs: having("mounted"),
    uploadedBytes,
  };
  if (opts.tag !== undefined) result.tag = opts.tag;
  return result;
}

/** Fetches a manifest by tag or digest; NotFound if the registry has none. */
export async function pullManifest(target: RegistryTarget, reference: string): Promise<PulledManifest> {
  if (reference.includes(":")) assertDigest(reference);
  else assertTag(reference);
  const session = new RegistrySession(target, [`repository:${target.repository}:pull`]);
  const res = await session.request("GET", `/v2/${target.repository}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT } });
  if (res.status === 404) {
    await drain(res);
    throw new NotFound(`image manifest ${target.repository}:${reference}`);
  }
  if (!res.ok) await session.fail(res, `pull manifest ${target.repository}:${reference}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const digest = "sha256:" + createHash("sha256").update(bytes).digest("hex");
  if (reference.startsWith("sha256:") && digest !== reference) {
    throw new BerthError("internal_error", `registry ${target.registry} returned a manifest hashing to ${digest} for ${reference}`);
  }
  const manifest: unknown = JSON.parse(bytes.toString("utf8"));
  const mediaType = (manifest as { mediaType?: string }).mediaType ?? res.headers.get("content-type") ?? "";
  return { digest, mediaType, bytes, manifest };
}

/** Fetches a whole blob and checks its digest; for configs and small layers. */
export async function fetchBlob(target: RegistryTarget, digest: string): Promise<Buffer> {
  assertDigest(digest);
  const session = new RegistrySession(target, [`repository:${target.repository}:pull`]);
  const res = await session.request("GET", `/v2/${target.repository}/blobs/${digest}`, { long: true });
  if (res.status === 404) {
    await drain(res);
    throw new NotFound(`blob ${digest} in ${target.repository}`);
  }
  if (!res.ok) await session.fail(res, `fetch blob ${digest}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const alg = digest.slice(0, digest.indexOf(":"));
  const actual = `${alg}:` + createHash(alg).update(bytes).digest("hex");
  if (actual !== digest) throw new BerthError("internal_error", `registry ${target.registry} returned a blob hashing to ${actual} for ${digest}`);
  return bytes;
}

interface RequestOptions {
  headers?: Record<string, string>;
  /** A factory, so the body can be sent again after an auth challenge. */
  body?: () => Uint8Array | AsyncIterable<Uint8Array>;
  /** Carries or returns blob data: no overall timeout. */
  long?: boolean;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** One client's view of one registry: base URL, credentials and the token it holds. */
class RegistrySession {
  readonly #target: RegistryTarget;
  readonly #base: string;
  readonly #fetch: FetchLike;
  readonly #scopes: Set<string>;
  #authorization: string | undefined;

  constructor(target: RegistryTarget, scopes: string[]) {
    assertRegistryHost(target.registry);
    assertRepository(target.repository);
    this.#target = target;
    this.#base = `${target.insecure ? "http" : "https"}://${target.registry}`;
    this.#fetch = target.fetch ?? ((input, init) => fetch(input, init));
    this.#scopes = new Set(scopes);
  }

  get #host(): string {
    return this.#target.registry;
  }

  /**
   * Sends a request, answering at most two auth challenges. Non-auth statuses are the
   * caller's. Safe under concurrency: requests that meet the first challenge together
   * share one token fetch, and a request that went out before another one authenticated
   * simply retries with the new Authorization.
   */
  async request(method: string, pathOrUrl: string | URL, opts: RequestOptions = {}): Promise<Response> {
    const url = new URL(pathOrUrl, this.#base);
    let challenges = 0;
    let freshToken = false;
    for (;;) {
      const sent = this.#authorization;
      const headers = new Headers(opts.headers);
      if (sent) headers.set("authorization", sent);
      const body = opts.body?.();
      const res = await this.#send(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: body as BodyInit, duplex: "half" as const }),
        ...(opts.long ? {} : { signal: AbortSignal.timeout(this.#target.timeoutMs ?? 30_000) }),
      });
      if (res.status !== 401) return res;

      const challenge = parseChallenge(res.headers.get("www-authenticate"));
      await drain(res);
      if (this.#authorization !== sent && challenges < 3) {
        challenges++;
        continue;
      }
      const what = `${method} ${url.pathname}`;
      if (challenge?.scheme === "bearer") {
        if (challenge.params.error === "insufficient_scope" && freshToken) {
          throw new Forbidden(`registry ${this.#host} denied ${what}: the token lacks scope ${challenge.params.scope ?? "(unnamed)"}${this.#who()}`);
        }
        if (challenges >= 2) throw new Unauthorized(`registry ${this.#host} rejected the token for ${what}${this.#who()}`);
        challenges++;
        for (const s of (challenge.params.scope ?? "").split(" ")) if (s) this.#scopes.add(s);
        await this.#refreshToken(challenge, sent);
        freshToken = true;
      } else if (challenge?.scheme === "basic") {
        const creds = this.#target.credentials;
        if (!creds) throw new Unauthorized(`registry ${this.#host} requires credentials for ${what}, and none were given`);
        if (sent?.startsWith("Basic ")) throw new Unauthorized(`registry ${this.#host} rejected the credentials of ${creds.username} for ${what}`);
        challenges++;
        this.#authorization = basic(creds);
      } else {
        throw new Unauthorized(`registry ${this.#host} answered 401 to ${what} with ${challenge ? `an unsupported auth scheme "${challenge.scheme}"` : "no WWW-Authenticate challenge"}`);
      }
    }
  }

  #tokenPending: Promise<void> | undefined;

  /** One token fetch at a time; callers that saw the same stale Authorization share it. */
  async #refreshToken(ch: Challenge, stale: string | undefined): Promise<void> {
    if (this.#tokenPending) return this.#tokenPending;
    if (this.#authorization !== stale) return;
    this.#tokenPending = this.#fetchToken(ch).then(
      (token) => {
        this.#authorization = `Bearer ${token}`;
      },
    ).finally(() => {
      this.#tokenPending = undefined;
    });
    return this.#tokenPending;
  }

  /** Throws the error for a response that is not what `action` needed; always throws. */
  async fail(res: Response, action: string): Promise<never> {
    const detail = await errorDetail(res);
    const msg = `registry ${this.#host} refused to ${action}: HTTP ${res.status}${detail ? ` ${detail}` : ""}`;
    if (res.status === 401) throw new Unauthorized(msg + this.#who());
    if (res.status === 403) throw new Forbidden(msg + this.#who());
    if (res.status >= 500 || res.status === 429) throw new Unavailable(msg);
    throw new BerthError("internal_error", msg);
  }

  /** Checks for `status` and, when the registry reports one, the digest it stored. */
  async expect(res: Response, status: number, action: string, digest?: string): Promise<void> {
    if (res.status !== status) await this.fail(res, action);
    await drain(res);
    const stored = res.headers.get("docker-content-digest");
    if (digest !== undefined && stored !== null && stored !== digest) {
      throw new BerthError("internal_error", `registry ${this.#host} stored ${stored} when asked to ${action}`);
    }
  }

  /** The upload URL from a 202 (upload session started or chunk accepted). */
  async uploadLocation(res: Response, action: string): Promise<URL> {
    if (res.status !== 202) await this.fail(res, action);
    await drain(res);
    const loc = res.headers.get("location");
    if (!loc) throw new BerthError("internal_error", `registry ${this.#host} sent no Location when asked to ${action}`);
    return new URL(loc, this.#base);
  }

  async #send(url: URL, init: RequestInit & { duplex?: "half" }): Promise<Response> {
    try {
      return await this.#fetch(url, init);
    } catch (e) {
      throw unreachable(`registry ${this.#host}`, e);
    }
  }

  async #fetchToken(ch: Challenge): Promise<string> {
    const realm = ch.params.realm;
    if (!realm) throw new Unauthorized(`registry ${this.#host} asked for a bearer token without naming a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new BerthError("internal_error", `registry ${this.#host} named an invalid token realm ${JSON.stringify(realm)}`);
    }
    if (ch.params.service) url.searchParams.set("service", ch.params.service);
    for (const s of this.#scopes) url.searchParams.append("scope", s);
    const creds = this.#target.credentials;
    const headers = new Headers(creds ? { authorization: basic(creds) } : {});
    let res: Response;
    try {
      res = await this.#fetch(url, { method: "GET", headers, signal: AbortSignal.timeout(this.#target.timeoutMs ?? 30_000) });
    } catch (e) {
      throw unreachable(`token service ${url.origin} of registry ${this.#host}`, e);
    }
    if (res.status === 401 || res.status === 403) {
      await drain(res);
      throw new Unauthorized(
        creds
          ? `the token service ${url.origin} of registry ${this.#host} rejected the credentials of ${creds.username}`
          : `registry ${this.#host} requires credentials (token service ${url.origin} refused an anonymous token)`,
      );
    }
    if (!res.ok) {
      const text = await res.text().catch(() => "");
      const msg = `token service ${url.origin} of registry ${this.#host} answered HTTP ${res.status} ${text.slice(0, 200)}`;
      throw res.status >= 500 ? new Unavailable(msg) : new BerthError("internal_error", msg);
    }
    const body = (await res.json().catch(() => ({}))) as { token?: unknown; access_token?: unknown };
    const token = typeof body.token === "string" && body.token ? body.token : body.access_token;
    if (typeof token !== "string" || !token) throw new BerthError("internal_error", `token service ${url.origin} returned no token`);
    return token;
  }

  #who(): string {
    const u = this.#target.credentials?.username;
    return u === undefined ? " (no credentials given)" : ` (user ${u})`;
  }
}

function unreachable(what: string, e: unknown): BerthError {
  if (e instanceof BerthError) return e;
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === "TimeoutError") return new Unavailable(`${what} did not answer in time`, e);
  const reason = err.cause?.code ?? err.cause?.message ?? err.message;
  return new Unavailable(`${what} is unreachable: ${reason}`, e);
}

function basic(c: RegistryCredentials): string {
  return "Basic " + Buffer.from(`${c.username}:${c.password}`).toString("base64");
}

/** Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas). */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  const rest = m[2] ?? "";
  let p: RegExpExecArray | null;
  while ((p = re.exec(rest)) !== null && p[0] !== "") {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

async function errorDetail(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(body.errors) && body.errors.length > 0) return body.errors.map((e) => `${e.code ?? "ERROR"}: ${e.message ?? ""}`).join("; ");
  } catch {
    // not a distribution error body
  }
  return text.slice(0, 200).trim();
}

async function drain(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

function withDigest(location: URL, digest: string): URL {
  const u = new URL(location);
  u.searchParams.set("digest", digest);
  return u;
}

async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = results.find((r) => r.status === "rejected");
  if (rejected) throw rejected.reason;
}

const REPO_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const REPO_RE = new RegExp(`^${REPO_COMPONENT}(?:/${REPO_COMPONENT})*$`);

/** Throws Invalid unless `name` is a valid distribution-spec repository name. */
export function assertRepository(name: string): void {
  if (name.length > 255 || !REPO_RE.test(name)) {
    throw new Invalid(`not a valid repository name: ${JSON.stringify(name)} (lowercase path components of letters and digits, separated by ".", "_", "__" or "-")`);
  }
}

function assertRegistryHost(host: string): void {
  if (!/^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(host)) throw new Invalid(`not a valid registry host: ${JSON.stringify(host)} (host[:port])`);
}
