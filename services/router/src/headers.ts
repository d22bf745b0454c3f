import { randomUUID } from "node:crypto";
import type { IncomingMessage, OutgoingHttpHeaders } from "node:http";

/** RFC 9110 §7.6.1 connection-specific headers, never forwarded either way. */
const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade", "http2-settings",
]);

/** Headers the router sets itself; incoming copies are replaced, not trusted. */
const ROUTER_SET = new Set(["x-forwarded-proto", "x-forwarded-port", "x-request-id", "x-request-start", "via", "x-forwarded-for", "expect"]);

const REQUEST_ID = /^[A-Za-z0-9+=/-]{20,200}$/;

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
  return v.replace(/[^\t\x20-\x7e\x80-\xff]/g, "");
}

function hopByHop(connection: string[] | undefined): Set<string> {
  if (!connection?.length) return HOP_BY_HOP;
  const set = new Set(HOP_BY_HOP);
  for (const v of connection) for (const t of v.split(",")) set.add(t.trim().toLowerCase());
  return set;
}

export function clientAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

export interface ForwardContext {
  requestId: string;
  startMs: number;
  proto: "http" | "https";
  port: number;
  /** X-Forwarded-For as sent upstream (incoming chain plus this client). */
  forwardedFor: string;
  /** Keep Connection/Upgrade for a protocol switch. */
  upgrade: boolean;
}

/** X-Forwarded-For: the incoming chain with the peer appended. */
export function forwardedFor(req: IncomingMessage): string {
  const prior = req.headersDistinct["x-forwarded-for"];
  const peer = clientAddress(req);
  const chain = prior?.length ? `${prior.join(", ")}, ${peer}` : peer;
  return headerSafe(chain);
}

/** Headers for the upstream request: end-to-end ones copied, router ones set. */
export function upstreamHeaders(req: IncomingMessage, ctx: ForwardContext): OutgoingHttpHeaders {
  const distinct = req.headersDistinct;
  const drop = hopByHop(distinct.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, values] of Object.entries(distinct)) {
    if (!values || drop.has(name) || ROUTER_SET.has(name)) continue;
    out[name] = name === "cookie" ? values.join("; ") : values.length === 1 ? values[0] : values;
  }
  out["x-forwarded-for"] = ctx.forwardedFor;
  out["x-forwarded-proto"] = ctx.proto;
  out["x-forwarded-port"] = String(ctx.port);
  out["x-request-id"] = ctx.requestId;
  out["x-request-start"] = String(ctx.startMs);
  out["via"] = appendVia(distinct.via);
  if (ctx.upgrade) {
    out["connection"] = "Upgrade";
    out["upgrade"] = headerSafe((distinct.upgrade ?? []).join(", "));
  }
  return out;
}

function appendVia(prior: string[] | undefined): string {
  return headerSafe(prior?.length ? `${prior.join(", ")}, 1.1 berth` : "1.1 berth");
}

/** Response headers for the client: hop-by-hop dropped, Via appended. */
export function downstreamHeaders(distinct: NodeJS.Dict<string[]>, opts: { upgrade?: boolean } = {}): OutgoingHttpHeaders {
  const drop = hopByHop(distinct.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, values] of Object.entries(distinct)) {
    if (!values || name === "via") continue;
    if (drop.has(name) && !(opts.upgrade && (name === "connection" || name === "upgrade"))) continue;
    out[name] = values.length === 1 ? values[0] : values;
  }
  out["via"] = appendVia(distinct.via);
  return out;
}

/** Serialize headers for a raw socket write (upgrade paths, where there is no ServerResponse). */
export function rawHeaderBlock(status: number, reason: string, headers: OutgoingHttpHeaders): string {
  let s = `HTTP/1.1 ${status} ${headerSafe(reason)}\r\n`;
  for (const [name, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    const safeName = name.replace(/[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g, "");
    for (const one of Array.isArray(v) ? v : [v]) s += `${safeName}: ${headerSafe(String(one))}\r\n`;
  }
  return s + "\r\n";
}
