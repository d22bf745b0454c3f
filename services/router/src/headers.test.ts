import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { clientAddress, downstreamHeaders, forwardedFor, headerSafe, requestHead, requestIdFrom, upstreamHeaders } from "./headers.ts";
import { formatAccessLog } from "./accesslog.ts";
import { wantsJson } from "./codes.ts";

/** A flat [name, value, …] list (node's rawHeaders shape) from name → values. */
function flat(headers: Record<string, string[]>): string[] {
  return Object.entries(headers).flatMap(([k, vs]) => vs.flatMap((v) => [k, v]));
}

/** A flat list as name → value, or values when repeated (how the tests below read it). */
function asObject(list: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i]!;
    const prev = out[k];
    out[k] = prev === undefined ? list[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), list[i + 1]!];
  }
  return out;
}

const peer = clientAddress({ socket: { remoteAddress: "::ffff:10.0.0.9" } } as unknown as IncomingMessage);

describe("headers", () => {
  it("keeps a valid X-Request-Id and replaces others", () => {
    const ok = "abcdefghij0123456789+=/-";
    expect(requestIdFrom(ok)).toBe(ok);
    expect(requestIdFrom("short")).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdFrom("x".repeat(201))).not.toBe("x".repeat(201));
    expect(requestIdFrom("bad id with spaces and more chars")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("builds forwarded headers that cannot split lines", () => {
    const raw = flat({ "x-forwarded-for": ["1.2.3.4\r\nX-Evil: 1"], host: ["a.localhost"], connection: ["keep-alive, x-hop"], "x-hop": ["1"], te: ["trailers"], cookie: ["a=1", "b=2"] });
    const fwd = forwardedFor("1.2.3.4\r\nX-Evil: 1", peer);
    expect(fwd).toBe("1.2.3.4X-Evil: 1, 10.0.0.9");
    const list = upstreamHeaders(raw, { requestId: "r".repeat(20), startMs: 42, proto: "http", port: 7780, forwardedFor: fwd, host: "a.localhost", upgrade: false });
    const h = asObject(list);
    expect(h["x-hop"]).toBeUndefined();
    expect(h.te).toBeUndefined();
    expect(h.connection).toBeUndefined();
    expect(h.cookie).toBe("a=1; b=2");
    expect(h.via).toBe("1.1 berth");
    expect(h["x-request-start"]).toBe("42");
    expect(h["x-forwarded-for"]).toBe(fwd);
    expect(h.host).toBe("a.localhost");
    for (const v of Object.values(h)) expect(String(v)).not.toMatch(/[\r\n]/);
    expect(headerSafe("a\r\nb\0c")).toBe("abc");
    const head = requestHead("POST", "/x?y=1", list, true);
    expect(head.startsWith("POST /x?y=1 HTTP/1.1\r\nhost: a.localhost\r\n")).toBe(true);
    expect(head.endsWith("\r\nvia: 1.1 berth\r\ntransfer-encoding: chunked\r\n\r\n")).toBe(true);
  });

  it("adds Host when the client sent none, and keeps Upgrade only for a protocol switch", () => {
    const raw = flat({ Connection: ["Upgrade"], Upgrade: ["websocket"], "X-Custom": ["kept as sent"] });
    const ctx = { requestId: "r".repeat(20), startMs: 1, proto: "https" as const, port: 443, forwardedFor: "10.0.0.9", host: "app.localhost", upgrade: false };
    const plain = asObject(upstreamHeaders(raw, ctx));
    expect(plain).toMatchObject({ host: "app.localhost", "X-Custom": "kept as sent", "x-forwarded-proto": "https", "x-forwarded-port": "443" });
    expect(plain.Upgrade).toBeUndefined();
    expect(plain.connection).toBeUndefined();
    expect(asObject(upstreamHeaders(raw, { ...ctx, upgrade: true }))).toMatchObject({ connection: "Upgrade", upgrade: "websocket" });
  });

  it("drops hop-by-hop response headers but keeps upgrade ones for a 101", () => {
    const d = flat({ connection: ["Upgrade"], upgrade: ["websocket"], "keep-alive": ["timeout=5"], "set-cookie": ["a=1", "b=2"], via: ["1.0 other"] });
    expect(asObject(downstreamHeaders(d))).toEqual({ "set-cookie": ["a=1", "b=2"], via: "1.0 other, 1.1 berth" });
    expect(asObject(downstreamHeaders(d, { upgrade: true }))).toMatchObject({ connection: "Upgrade", upgrade: "websocket" });
    // Headers the app's Connection header names are hop-by-hop too.
    expect(asObject(downstreamHeaders(flat({ Connection: ["x-secret"], "X-Secret": ["1"], "Content-Type": ["text/plain"] })))).toEqual({ "Content-Type": "text/plain", via: "1.1 berth" });
  });

  it("chooses JSON only when asked", () => {
    expect(wantsJson("application/json")).toBe(true);
    expect(wantsJson("text/html,application/json")).toBe(false);
    expect(wantsJson("application/vnd.heroku+json; version=3")).toBe(true);
    expect(wantsJson(undefined)).toBe(false);
  });

  it("formats Heroku router lines", () => {
    const base = { method: "GET", path: '/a"b', host: "x.localhost", requestId: "rid", fwd: "127.0.0.1", dyno: "web.1", connectMs: 1, serviceMs: 5, status: 200, bytes: 123, protocol: "http" as const };
    expect(formatAccessLog({ at: "info", ...base })).toBe(
      'at=info method=GET path="/a\\"b" host=x.localhost request_id=rid fwd="127.0.0.1" dyno=web.1 connect=1ms service=5ms status=200 bytes=123 protocol=http',
    );
    expect(formatAccessLog({ at: "error", code: "H12", desc: "Request timeout", ...base, status: 504 })).toMatch(/^at=error code=H12 desc="Request timeout" method=GET/);
  });
});
