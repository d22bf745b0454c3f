import { createHmac } from "node:crypto";
import type { Readable } from "node:stream";
import { constantTimeEqual } from "../auth/tokens.ts";

/** The slice of the blob store the API uses for sources. */
export interface SourceBlobs {
  put(key: string, body: Readable | Buffer): Promise<unknown>;
  get(key: string): Promise<Readable>;
  /** A pre-signed URL where the store can make one (S3); null when Berth serves the bytes itself. */
  signedUrl(key: string, method: "GET" | "PUT", expiresInSec: number): Promise<string | null>;
}

export const SOURCE_URL_TTL_SEC = 3600;

export function sourceKey(id: string): string {
  return `sources/${id}.tgz`;
}

/** Berth-served source URLs carry an expiry and an HMAC, so they work without a token (curl, the Heroku CLI). */
export function signSourceUrl(publicUrl: string, secret: string, id: string, method: "GET" | "PUT", expiresAt: number): string {
  const exp = Math.floor(expiresAt / 1000);
  const sig = createHmac("sha256", secret).update(`${method}\n${id}\n${exp}`).digest("base64url");
  return `${publicUrl}/sources/${id}/blob?method=${method}&expires=${exp}&sig=${sig}`;
}

export function checkSourceSignature(secret: string, id: string, method: "GET" | "PUT", exp: string | undefined, sig: string | undefined, now: number): boolean {
  if (!exp || !sig || !/^\d{1,12}$/.test(exp) || Number(exp) * 1000 < now) return false;
  const want = createHmac("sha256", secret).update(`${method}\n${id}\n${exp}`).digest("base64url");
  return constantTimeEqual(want, sig);
}

/** The source id a build URL points at, when it is one of Berth's own source URLs. */
export function ownSourceId(url: string, origins: readonly string[]): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  const m = /\/sources\/([0-9a-f-]{36})(?:\/blob|\.tgz)$/.exec(u.pathname);
  if (!m) return null;
  return origins.some((o) => new URL(o).origin === u.origin) ? m[1]! : null;
}
