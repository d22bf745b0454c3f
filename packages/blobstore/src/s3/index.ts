/**
 * S3 blob store: any S3 API (AWS, Ceph radosgw, MinIO) through @aws-sdk/client-s3.
 *
 * Bodies up to one part (8 MiB by default) go up in one PutObject; larger ones in a
 * multipart upload, one part buffered at a time, aborted if anything fails, so memory
 * stays at about one part per put whatever the size. Presigned URLs are SigV4 query
 * signatures computed here (sigv4.ts) from the static credentials.
 *
 * Errors: a missing key is NotFound; an unreachable endpoint, a 5xx or a missing
 * bucket is Unavailable (a platform fault, never an empty answer); anything else the
 * server refuses is an internal_error BerthError carrying the S3 error as cause.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { S3 } from "@aws-sdk/client-s3";
import { BerthError, type Clock, Invalid, isBerthError, NotFound, Unavailable } from "@berth/core";
import {
  type BlobInfo,
  type BlobStore,
  type PutOptions,
  type PutResult,
  type SignedMethod,
  validateExpiry,
  validateKey,
  validatePrefix,
} from "../port.ts";
import { encodeKeyPath, presignUrl, type SigV4Credentials } from "./sigv4.ts";

/**
 * The subset of @aws-sdk/client-s3's aggregated `S3` client this adapter calls.
 * The real client satisfies it; a test double needs only these methods.
 */
export interface S3Api {
  putObject(input: { Bucket: string; Key: string; Body: Uint8Array; ContentType?: string }): Promise<unknown>;
  getObject(input: { Bucket: string; Key: string }): Promise<{ Body?: unknown }>;
  headObject(input: { Bucket: string; Key: string }): Promise<{ ContentLength?: number }>;
  deleteObject(input: { Bucket: string; Key: string }): Promise<unknown>;
  listObjectsV2(input: { Bucket: string; Prefix?: string; ContinuationToken?: string }): Promise<{
    Contents?: { Key?: string }[];
    IsTruncated?: boolean;
    NextContinuationToken?: string;
  }>;
  createMultipartUpload(input: { Bucket: string; Key: string; ContentType?: string }): Promise<{ UploadId?: string }>;
  uploadPart(input: {
    Bucket: string;
    Key: string;
    UploadId: string;
    PartNumber: number;
    Body: Uint8Array;
  }): Promise<{ ETag?: string }>;
  completeMultipartUpload(input: {
    Bucket: string;
    Key: string;
    UploadId: string;
    MultipartUpload: { Parts: { ETag: string; PartNumber: number }[] };
  }): Promise<unknown>;
  abortMultipartUpload(input: { Bucket: string; Key: string; UploadId: string }): Promise<unknown>;
}

export interface S3BlobStoreOptions {
  bucket: string;
  region: string;
  /** e.g. "http://127.0.0.1:7480"; omitted means AWS (https://s3.<region>.amazonaws.com). */
  endpoint?: string;
  /** Address the bucket in the path (radosgw, MinIO) instead of the host name. */
  forcePathStyle?: boolean;
  /** Static credentials. Without them the SDK's default chain is used and signedUrl() returns null. */
  credentials?: SigV4Credentials;
  /** Size of multipart upload parts and the single-PUT threshold; at least 5 MiB. Default 8 MiB. */
  partSizeBytes?: number;
  /** Attempts per S3 call, retries included. Default 3. */
  maxAttempts?: number;
  /** TCP connect timeout. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Signing time for presigned URLs. */
  clock?: Pick<Clock, "now">;
  /** Use this client instead of building one from the options above. */
  client?: S3Api;
}

const MiB = 1024 * 1024;
const MIN_PART_BYTES = 5 * MiB;

/** A BlobStore in one S3 bucket. Builds no connection until the first call. */
export function createS3BlobStore(options: S3BlobStoreOptions): BlobStore {
  if (!options.bucket) throw new Invalid("S3 blob store: bucket is required.");
  if (!options.region) throw new Invalid("S3 blob store: region is required.");
  const partSize = options.partSizeBytes ?? 8 * MiB;
  if (!Number.isInteger(partSize) || partSize < MIN_PART_BYTES) {
    throw new Invalid(`S3 blob store: partSizeBytes must be an integer >= ${MIN_PART_BYTES}, got ${partSize}.`);
  }
  let base: URL;
  try {
    base = new URL(options.endpoint ?? `https://s3.${options.region}.amazonaws.com`);
  } catch {
    throw new Invalid(`S3 blob store: endpoint ${JSON.stringify(options.endpoint)} is not a URL.`);
  }
  const client =
    options.client ??
    new S3({
      region: options.region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      maxAttempts: options.maxAttempts ?? 3,
      requestHandler: { connectionTimeout: options.connectTimeoutMs ?? 5000 },
      // Checksums only where S3 requires them: the bodies we send are whole buffers
      // with Content-Length, and S3-compatible servers differ in trailer support.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  return new S3BlobStore(client, options, base, partSize);
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "ECONNABORTED",
]);
const UNAVAILABLE_NAMES = new Set(["TimeoutError", "RequestTimeout", "SlowDown", "ServiceUnavailable", "InternalError"]);

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

class S3BlobStore implements BlobStore {
  readonly #s3: S3Api;
  readonly #bucket: string;
  readonly #region: string;
  readonly #credentials: SigV4Credentials | undefined;
  readonly #pathStyle: boolean;
  readonly #base: URL;
  readonly #partSize: number;
  readonly #now: () => number;

  constructor(s3: S3Api, options: S3BlobStoreOptions, base: URL, partSize: number) {
    this.#s3 = s3;
    this.#bucket = options.bucket;
    this.#region = options.region;
    this.#credentials = options.credentials;
    this.#pathStyle = options.forcePathStyle ?? false;
    this.#base = base;
    this.#partSize = partSize;
    const clock = options.clock;
    this.#now = clock ? () => clock.now() : Date.now;
  }

  /** The one place S3 errors become Berth errors. */
  #error(e: unknown, op: string): Error {
    if (isBerthError(e)) return e;
    const err = (e ?? {}) as SdkError;
    const status = err.$metadata?.httpStatusCode;
    const detail = err.name && err.name !== "Error" ? err.name : (err.code ?? err.message ?? String(e));
    if (err.name === "NoSuchKey" || (status === 404 && err.name === "NotFound")) return new NotFound("blob");
    if (err.name === "NoSuchBucket") {
      return new Unavailable(`Blob storage bucket ${this.#bucket} does not exist.`, e);
    }
    if (
      (status !== undefined && status >= 500) ||
      (err.code !== undefined && NETWORK_CODES.has(err.code)) ||
      (err.name !== undefined && UNAVAILABLE_NAMES.has(err.name))
    ) {
      return new Unavailable(`Blob storage is unavailable (${op}: ${detail}).`, e);
    }
    return new BerthError("internal_error", `Blob storage ${op} failed: ${detail}.`, { cause: e });
  }

  async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<PutResult> {
    validateKey(key);
    const hash = createHash("sha256");
    let size = 0;
    const source = Buffer.isBuffer(body) ? [body] : body;
    const parts = fixedSizeChunks(source, this.#partSize)[Symbol.asyncIterator]();
    const next = async (): Promise<Buffer | undefined> => {
      let r;
      try {
        r = await parts.next();
      } catch (e) {
        throw new SourceError(e);
      }
      if (r.done) return undefined;
      hash.update(r.value);
      size += r.value.length;
      return r.value;
    };
    const Bucket = this.#bucket;
    const ContentType = opts?.contentType;
    try {
      const first = await next();
      const second = first === undefined ? undefined : await next();
      if (second === undefined) {
        await this.#s3
          .putObject({ Bucket, Key: key, Body: first ?? Buffer.alloc(0), ...(ContentType ? { ContentType } : {}) })
          .catch((e: unknown) => {
            throw this.#error(e, "put");
          });
      } else {
        await this.#multipart(key, ContentType, [first!, second], next);
      }
    } catch (e) {
      // The caller's stream failed: that is its error to see, not a storage fault.
      throw e instanceof SourceError ? e.cause : e;
    } finally {
      // Stops (and destroys) a source stream we did not drain because a part failed.
      await parts.return?.();
    }
    return { size, sha256: hash.digest("hex") };
  }

  async #multipart(
    Key: string,
    ContentType: string | undefined,
    firstParts: Buffer[],
    next: () => Promise<Buffer | undefined>,
  ): Promise<void> {
    const Bucket = this.#bucket;
    let UploadId: string | undefined;
    try {
      ({ UploadId } = await this.#s3.createMultipartUpload({ Bucket, Key, ...(ContentType ? { ContentType } : {}) }));
      if (!UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
      const done: { ETag: string; PartNumber: number }[] = [];
      const queue = [...firstParts];
      for (let PartNumber = 1; ; PartNumber++) {
        const Body = queue.shift() ?? (await next());
        if (Body === undefined) break;
        const { ETag } = await this.#s3.uploadPart({ Bucket, Key, UploadId, PartNumber, Body });
        if (!ETag) throw new Error(`UploadPart ${PartNumber} returned no ETag`);
        done.push({ ETag, PartNumber });
      }
      await this.#s3.completeMultipartUpload({ Bucket, Key, UploadId, MultipartUpload: { Parts: done } });
    } catch (e) {
      if (UploadId) {
        // Best effort: an upload left behind costs storage until the bucket's
        // lifecycle rule (if any) removes it, but must not hide the real error.
        await this.#s3.abortMultipartUpload({ Bucket, Key, UploadId }).catch(() => {});
      }
      throw e instanceof SourceError ? e : this.#error(e, "multipart put");
    }
  }

  async get(key: string): Promise<Readable> {
    validateKey(key);
    let out: { Body?: unknown };
    try {
      out = await this.#s3.getObject({ Bucket: this.#bucket, Key: key });
    } catch (e) {
      throw this.#error(e, "get");
    }
    // The SDK's Node HTTP handler answers with a Node stream (IncomingMessage).
    if (out.Body instanceof Readable) return out.Body;
    throw new BerthError("internal_error", "Blob storage get returned no body stream.");
  }

  async head(key: string): Promise<BlobInfo | null> {
    validateKey(key);
    try {
      const out = await this.#s3.headObject({ Bucket: this.#bucket, Key: key });
      return { size: out.ContentLength ?? 0 };
    } catch (e) {
      const mapped = this.#error(e, "head");
      if (mapped instanceof NotFound) return null;
      throw mapped;
    }
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    try {
      await this.#s3.deleteObject({ Bucket: this.#bucket, Key: key });
    } catch (e) {
      const mapped = this.#error(e, "delete");
      if (!(mapped instanceof NotFound)) throw mapped;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.#s3.listObjectsV2({
          Bucket: this.#bucket,
          ...(prefix ? { Prefix: prefix } : {}),
          ...(token ? { ContinuationToken: token } : {}),
        });
      } catch (e) {
        throw this.#error(e, "list");
      }
      for (const item of page.Contents ?? []) if (item.Key !== undefined) yield item.Key;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !token) {
        throw new BerthError("internal_error", "Blob storage list was truncated without a continuation token.");
      }
    } while (token);
  }

  async signedUrl(key: string, method: SignedMethod, expiresInSec: number): Promise<string | null> {
    validateKey(key);
    validateExpiry(expiresInSec);
    if (!this.#credentials) return null;
    return presignUrl({
      method,
      url: this.#objectUrl(key),
      region: this.#region,
      credentials: this.#credentials,
      expiresInSec,
      now: new Date(this.#now()),
    }).href;
  }

  /** The object's URL as the SDK addresses it (path-style or virtual-hosted). */
  #objectUrl(key: string): URL {
    const url = new URL(this.#base.href);
    const basePath = url.pathname.replace(/\/+$/, "");
    if (this.#pathStyle) {
      url.pathname = `${basePath}/${encodeURIComponent(this.#bucket)}/${encodeKeyPath(key)}`;
    } else {
      url.hostname = `${this.#bucket}.${url.hostname}`;
      url.pathname = `${basePath}/${encodeKeyPath(key)}`;
    }
    url.search = "";
    return url;
  }
}

/** An error of the body being uploaded, kept apart from S3's own errors. */
class SourceError extends Error {
  constructor(cause: unknown) {
    super("blob body stream failed", { cause });
  }
}

/** Re-chunks a byte stream into chunks of exactly size bytes (the last may be shorter). */
async function* fixedSizeChunks(source: AsyncIterable<Buffer | string> | Iterable<Buffer>, size: number) {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    let buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    while (pendingBytes + buf.length >= size) {
      const take = size - pendingBytes;
      pending.push(buf.subarray(0, take));
      yield Buffer.concat(pending, size);
      pending = [];
      pendingBytes = 0;
      buf = buf.subarray(take);
    }
    if (buf.length > 0) {
      pending.push(buf);
      pendingBytes += buf.length;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}
