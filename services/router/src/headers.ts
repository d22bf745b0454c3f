import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";

/**
 * Header lists here are flat [name, value, name, value, …] arrays, the shape of node's
 * `rawHeaders` and of what `writeHead` and `http.request` accept without a per-header
 * setHeader: one pass, no intermediate objects.
 */

/** RFC 9110 §7.6.1 connection-specific headers, never forwarded either way. */
const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade", "http2-settings",
]);

/** Headers the router sets itself; incoming copies are replaced, not trusted. */
const ROUTER_SET = new Set(["x-forwarded-proto", "x-forwarded-port", "x-request-id", "x-request-start", "via", "x-forwarded-for", "expect"]);

const REQUEST_ID = /^[A-Za-z0-9+=/-]{20,200}$/;
const UNSAFE = /[^\t\x20-\x7e\x80-\xff]/;
const UNSAFE_ALL = /[^\t\x20-\x7e\x80-\xff]/g;

/** Keep a well-formed incoming X-Request-Id (Heroku's rule), else mint a UUID. */
export function requestIdFrom(incoming: string | string[] | undefined): string {
  const v = Array.isArray(incoming) ? incoming[0] : incoming;
  return v !== undefined && REQUEST_ID.test(v) ? v : randomUUID();
}

/**
 * Drop anything that is not a legal header value byte (CTLs, CR, LF, NUL). Every value
 * the router builds goes through this, so no input can split a header line.
 */
export function headerSafe(v: string): string {
  return UNSAFE.test(v) ? v.replace(UNSAFE_ALL, "") : v;
}

/**
 * Header names a Connection header nominates as hop-by-hop, beyond the fixed set;
 * undefined for the usual "keep-alive" / "close" / "Upgrade".
 */
function nominated(connection: string | undefined): Set<string> | undefined {
  if (!connection || connection === "keep-alive" || connection === "close") return undefined;
  let set: Set<string> | undefined;
  for (const t of connection.split(",")) {
    const name = t.trim().toLowerCase();
    if (name && name !== "close" && !HOP_BY_HOP.has(name)) (set ??= new Set()).add(name);
  }
  return set;
}

/** Values of every `name` (lowercase) header in a flat list, joined with ", "; undefined if none. */
function joined(raw: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === name.length && n.toLowerCase() === name) out = out === undefined ? raw[i + 1]! : `${out}, ${raw[i + 1]!}`;
  }
  return out;
}

export function clientAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/** X-Forwarded-For: the incoming chain (node joins repeated headers with ", ") with the peer appended. */
export function forwardedFor(prior: string | undefined, peer: string): string {
  return headerSafe(prior ? `${prior}, ${peer}` : peer);
}

export interface ForwardContext {
  requestId: string;
  startMs: number;
  proto: "http" | "https";
  port: number;
  /** X-Forwarded-For as sent upstream (incoming chain plus this client). */
  forwardedFor: string;
  /** Host to send when the client sent none (HTTP/1.0, absolute-form). */
  host: string;
  /** Keep Connection/Upgrade for a protocol switch. */
  upgrade: boolean;
}

function appendVia(prior: string | undefined): string {
  return headerSafe(prior ? `${prior}, 1.1 berth` : "1.1 berth");
}

/**
 * Headers for the upstream request from the client's `rawHeaders`: end-to-end ones
 * copied in order (names as sent; several Cookie lines joined with "; "), hop-by-hop
 * and router-owned ones dropped, then the router's own.
 */
export function upstreamHeaders(raw: readonly string[], ctx: ForwardContext): string[] {
  const out: string[] = [];
  let drop: Set<string> | undefined;
  let via: string | undefined;
  let upgrade: string | undefined;
  let cookie: string | undefined;
  let cookies = 0;
  let hasHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === "host") hasHost = true;
    else if (lower === "cookie") {
      cookie = cookies++ === 0 ? value : `${cookie}; ${value}`;
      continue;
    } else if (HOP_BY_HOP.has(lower)) {
      if (lower === "connection") drop = nominated(value) ?? drop;
      else if (lower === "upgrade") upgrade = upgrade === undefined ? value : `${upgrade}, ${value}`;
      continue;
    } else if (ROUTER_SET.has(lower)) {
      if (lower === "via") via = via === undefined ? value : `${via}, ${value}`;
      continue;
    }
    out.push(name, value);
  }
  if (drop) {
    // Rare: the client named extra hop-by-hop headers. Several Connection headers are merged first.
    const all = nominated(joined(raw, "connection"));
    for (let i = out.length - 2; i >= 0; i -= 2) if (all?.has(out[i]!.toLowerCase())) out.splice(i, 2);
    if (cookie !== undefined && all?.has("cookie")) cookie = undefined;
  }
  if (cookie !== undefined) out.push("cookie", cookie);
  if (!hasHost && ctx.host) out.push("host", ctx.host);
  out.push(
    "x-forwarded-for", ctx.forwardedFor,
    "x-forwarded-proto", ctx.proto,
    "x-forwarded-port", String(ctx.port),
    "x-request-id", ctx.requestId,
    "x-request-start", String(ctx.startMs),
    "via", appendVia(via),
  );
  if (ctx.upgrade) out.push("connection", "Upgrade", "upgrade", headerSafe(upgrade ?? ""));
  return out;
}

/**
 * The request head the router writes to a pooled connection, blank line included.
 * Names and values come from node's parser (already valid) or went through headerSafe.
 */
export function requestHead(method: string, target: string, headers: readonly string[], chunked: boolean): string {
  let s = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  // HTTP/1.1 connections persist unless a side says close: no Connection header needed.
  return s + (chunked ? "transfer-encoding: chunked\r\n\r\n" : "\r\n");
}

/** Response headers for the client from the app's raw list: hop-by-hop dropped (kept for a 101), Via appended. */
export function downstreamHeaders(raw: readonly string[], opts?: { upgrade?: boolean }): string[] {
  const upgrade = opts?.upgrade === true;
  const out: string[] = [];
  let via: string | undefined;
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === "via") {
      via = via === undefined ? value : `${via}, ${value}`;
      continue;
    }
    if (HOP_BY_HOP.has(lower)) {
      if (lower === "connection") connection = connection === undefined ? value : `${connection}, ${value}`;
      if (!(upgrade && (lower === "connection" || lower === "upgrade"))) continue;
    }
    out.push(name, value);
  }
  const drop = nominated(connection);
  if (drop) for (let i = out.length - 2; i >= 0; i -= 2) if (drop.has(out[i]!.toLowerCase())) out.splice(i, 2);
  out.push("via", appendVia(via));
  return out;
}

/** Serialize a flat header list for a raw socket write (upgrade paths, where there is no ServerResponse). */
export function rawHeaderBlock(status: number, reason: string, headers: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${headerSafe(reason)}\r\n`;
  for (let i = 0; i < headers.length; i += 2) {
    const safeName = headers[i]!.replace(/[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g, "");
    s += `${safeName}: ${headerSafe(headers[i + 1]!)}\r\n`;
  }
  return s + "\r\n";
}
