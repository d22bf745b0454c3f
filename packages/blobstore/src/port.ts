/**
 * The blob store port: what the builder (slugs, build caches), the API (source
 * uploads, log archives) and the runtime (slug downloads) need from "where bytes
 * live". Two implementations live beside this file: local/ (a directory, the
 * embedded default) and s3/ (any S3 API: AWS, Ceph radosgw, MinIO).
 *
 * Invariants every implementation keeps (checked by contract.ts):
 * - put() is atomic: a reader sees the old bytes or the new bytes, never a part;
 *   a failed put leaves the previous object untouched.
 * - get() of a missing key throws NotFound; head() of a missing key returns null;
 *   delete() of a missing key succeeds.
 * - list(prefix) yields every key that starts with prefix, in ascending byte order,
 *   however many there are (pagination is the store's business). A store it cannot
 *   reach throws Unavailable; it never pretends to be empty.
 * - Keys are checked by validateKey() before any I/O.
 */
import type { Readable } from "node:stream";
import { Invalid } from "@berth/core";

export interface PutOptions {
  contentType?: string;
}

export interface PutResult {
  /** Bytes stored. */
  size: number;
  /** Hex SHA-256 of the bytes stored, when the store computed it while writing. */
  sha256?: string;
}

export interface BlobInfo {
  size: number;
}

export type SignedMethod = "GET" | "PUT";

export interface BlobStore {
  /** Stores body under key, replacing any previous object. */
  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<PutResult>;
  /** A stream of the object's bytes; NotFound if there is none. */
  get(key: string): Promise<Readable>;
  /** The object's size, or null if there is none. */
  head(key: string): Promise<BlobInfo | null>;
  /** Removes the object; succeeds if there is none. */
  delete(key: string): Promise<void>;
  /** Every key starting with prefix, in ascending byte order. */
  list(prefix: string): AsyncIterable<string>;
  /**
   * A URL that lets a plain HTTP client GET or PUT this key for expiresInSec seconds
   * without credentials, or null when the store cannot sign (then the API serves or
   * accepts the bytes itself).
   */
  signedUrl(key: string, method: SignedMethod, expiresInSec: number): Promise<string | null>;
}

export const MAX_KEY_BYTES = 1024;

/**
 * Throws Invalid unless key is a store-portable key: 1..1024 UTF-8 bytes,
 * "/"-separated segments that are non-empty and not "." or "..", no leading "/",
 * no NUL. The same rules on every store, so code tested on local/ works on s3/.
 */
export function validateKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) throw new Invalid("Blob key must be a non-empty string.");
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) {
    throw new Invalid(`Blob key is longer than ${MAX_KEY_BYTES} bytes.`);
  }
  if (key.includes("\0")) throw new Invalid("Blob key must not contain NUL.");
  if (key.startsWith("/")) throw new Invalid("Blob key must not start with '/'.");
  if (!key.isWellFormed()) throw new Invalid("Blob key must be valid UTF-8.");
  for (const segment of key.split("/")) {
    if (segment === "") throw new Invalid(`Blob key ${JSON.stringify(key)} has an empty segment.`);
    if (segment === "." || segment === "..") {
      throw new Invalid(`Blob key ${JSON.stringify(key)} must not contain '.' or '..' segments.`);
    }
  }
}

/** Throws Invalid unless prefix is usable with list(): a key prefix ("" lists everything). */
export function validatePrefix(prefix: string): void {
  if (typeof prefix !== "string") throw new Invalid("Blob prefix must be a string.");
  if (prefix === "") return;
  if (Buffer.byteLength(prefix, "utf8") > MAX_KEY_BYTES) {
    throw new Invalid(`Blob prefix is longer than ${MAX_KEY_BYTES} bytes.`);
  }
  if (prefix.includes("\0")) throw new Invalid("Blob prefix must not contain NUL.");
  if (prefix.startsWith("/")) throw new Invalid("Blob prefix must not start with '/'.");
  if (!prefix.isWellFormed()) throw new Invalid("Blob prefix must be valid UTF-8.");
}

/** Throws Invalid unless expiresInSec is a whole number of seconds in 1..7 days (S3's limit). */
export function validateExpiry(expiresInSec: number): void {
  if (!Number.isInteger(expiresInSec) || expiresInSec < 1 || expiresInSec > 604_800) {
    throw new Invalid(`Signed URL expiry must be 1..604800 seconds, got ${expiresInSec}.`);
  }
}
