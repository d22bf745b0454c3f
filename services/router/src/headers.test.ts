import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { downstreamHeaders, forwardedFor, headerSafe, requestIdFrom, upstreamHeaders } from "./headers.ts";
import { formatAccessLog } from "./accesslog.ts";
import { wantsJson } from "./codes.ts";

function fakeReq(headers: Record<string, string[]>, remote = "::ffff:10.0.0.9"): IncomingMessage {
  return { headersDistinct: headers, socket: { remoteAddress: remote } } as unknown as IncomingMessage;
}

describe("headers", () => {
  it("keeps a valid X-Request-Id and replaces others", () => {
    const ok = "abcdefghij0123456789+=/-";
    expect(requestIdFrom(ok)).toBe(ok);
    expect(requestIdFrom("short")).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdFrom("x".repeat(201))).not.toBe("x".repeat(201));
    expect(requestIdFrom("bad id with spaces and more chars")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("builds forwarded headers that cannot split lines", () => {
    const req = fakeReq({ "x-forwarded-for": ["1.2.3.4\r\nX-Evil: 1"], host: ["a.localhost"], connection: ["keep-alive, x-hop"], "x-hop": ["1"], te: ["trailers"], cookie: ["a=1", "b=2"] });
    const fwd = forwardedFor(req);
    expect(fwd).toBe("1.2.3.4X-Evil: 1, 10.0.0.9");
    const h = upstreamHeaders(req, { requestId: "r".repeat(20), startMs: 42, proto: "http", port: 7780, forwardedFor: fwd, upgrade: false });
    expect(h["x-hop"]).toBeUndefined();
    expect(h.te).toBeUndefined();
    expect(h.connection).toBeUndefined();
    expect(h.cookie).toBe("a=1; b=2");
    expect(h.via).toBe("1.1 berth");
    expect(h["x-request-start"]).toBe("42");
    for (const v of Object.values(h)) expect(String(v)).not.toMatch(/[\r\n]/);
    expect(headerSafe("a\r\nb\0c")).toBe("abc");
  });

  it("drops hop-by-hop response headers but keeps upgrade ones for a 101", () => {
    const d = { connection: ["Upgrade"], upgrade: ["websocket"], "keep-alive": ["timeout=5"], "set-cookie": ["a=1", "b=2"], via: ["1.0 other"] };
    expect(downstreamHeaders(d)).toEqual({ "set-cookie": ["a=1", "b=2"], via: "1.0 other, 1.1 berth" });
    expect(downstreamHeaders(d, { upgrade: true })).toMatchObject({ connection: "Upgrade", upgrade: "websocket" });
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
