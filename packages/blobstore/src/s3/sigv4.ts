/**
 * AWS Signature Version 4 query-string presigning for S3 (the "presigned URL" of
 * the S3 docs). @aws-sdk/s3-request-presigner is not a dependency; this is the
 * whole algorithm for the one case we need: sign only the host header, payload
 * UNSIGNED-PAYLOAD, so any HTTP client can use the URL as is.
 * Spec: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
 */
import { createHash, createHmac } from "node:crypto";

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface PresignInput {
  method: string;
  /** Scheme, host[:port], the already-encoded path, and any query parameters of the request itself. */
  url: URL;
  region: string;
  credentials: SigV4Credentials;
  expiresInSec: number;
  /** Signing time. */
  now: Date;
  service?: string;
}

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ is %XX. */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** An S3 object key as a URL path: each segment encoded, "/" kept. */
export function encodeKeyPath(key: string): string {
  return key.split("/").map(uriEncode).join("/");
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

function sha256Hex(data: string): string {
  return createHash("sha256").update(data, "utf8").digest("hex");
}

/** "20240102T030405Z" */
function amzDate(now: Date): string {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/** Returns input.url with the X-Amz-* query parameters that authorize the request. */
export function presignUrl(input: PresignInput): URL {
  const service = input.service ?? "s3";
  const datetime = amzDate(input.now);
  const date = datetime.slice(0, 8);
  const scope = `${date}/${input.region}/${service}/aws4_request`;
  const params: [string, string][] = [
    ["X-Amz-Algorithm", "AWS4-HMAC-SHA256"],
    ["X-Amz-Credential", `${input.credentials.accessKeyId}/${scope}`],
    ["X-Amz-Date", datetime],
    ["X-Amz-Expires", String(input.expiresInSec)],
    ["X-Amz-SignedHeaders", "host"],
  ];
  if (input.credentials.sessionToken) params.push(["X-Amz-Security-Token", input.credentials.sessionToken]);
  for (const [k, v] of input.url.searchParams) params.push([k, v]);
  const query = params
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  // URL.host drops default ports, as HTTP clients do in the Host header they send.
  const canonicalRequest = [
    input.method,
    input.url.pathname,
    query,
    `host:${input.url.host}\n`,
    "host",
    "UNSIGNED-PAYLOAD",
  ].join("\n");
  const stringToSign = ["AWS4-HMAC-SHA256", datetime, scope, sha256Hex(canonicalRequest)].join("\n");
  let key = hmac(`AWS4${input.credentials.secretAccessKey}`, date);
  key = hmac(key, input.region);
  key = hmac(key, service);
  key = hmac(key, "aws4_request");
  const signature = createHmac("sha256", key).update(stringToSign, "utf8").digest("hex");
  const out = new URL(input.url.href);
  out.search = `${query}&X-Amz-Signature=${signature}`;
  return out;
}
