import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { Waker } from "./autoscaler.ts";
import { appRoute, backend, closeAll, startRouter } from "./harness.ts";
import { request, until } from "./testkit.ts";

afterEach(closeAll);

/** Send raw bytes; resolve with everything the router wrote before it closed. */
function raw(port: number, write: (s: net.Socket) => void): Promise<{ text: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(port, "127.0.0.1", () => write(s));
    let text = "";
    s.on("data", (c) => (text += c));
    s.on("error", () => {});
    s.on("close", () => resolve({ text, ms: Date.now() - t0 }));
  });
}

describe("router: client limits", () => {
  it("cuts off a slowloris client after headersTimeoutMs", async () => {
    const h = await startRouter({ limits: { headersTimeoutMs: 300, requestTimeoutMs: 1000, timeoutCheckIntervalMs: 50 } });
    let drip: NodeJS.Timeout | undefined;
    const r = await raw(h.port, (s) => {
      s.write("GET / HTTP/1.1\r\nHost: a.localhost\r\n");
      drip = setInterval(() => s.writable && s.write("X-Drip: 1\r\n"), 50);
    });
    clearInterval(drip);
    expect(r.text).toMatch(/^HTTP\/1\.1 408/);
    expect(r.ms).toBeLessThan(2000);
  });

  it("answers 431 to oversized request headers", async () => {
    const be = await backend((_req, res) => res.end("no"));
    const h = await startRouter({ limits: { maxHeaderBytes: 4096 } });
    h.app("big", [be.port]);
    const r = await raw(h.port, (s) => s.write(`GET / HTTP/1.1\r\nHost: big.localhost\r\nX-Big: ${"a".repeat(8000)}\r\n\r\n`));
    expect(r.text).toMatch(/^HTTP\/1\.1 431/);
    expect(be.seen).toHaveLength(0);
  });

  it("answers 413 when Content-Length exceeds the body limit, without bothering the app", async () => {
    const be = await backend((_req, res) => res.end("no"));
    const h = await startRouter({ limits: { maxBodyBytes: 1024 } });
    h.app("up", [be.port]);
    const r = await request(h.port, { host: "up.localhost", method: "POST", body: "a".repeat(2048) });
    expect(r.status).toBe(413);
    expect(r.headers.connection).toBe("close");
    expect(be.seen).toHaveLength(0);
    await until(() => h.lines.length === 1);
    expect(h.lines[0]).toMatch(/code=H25 .*status=413/);
  });

  it("answers 413 when a chunked body grows past the limit mid-stream", async () => {
    const be = await backend((req, res) => {
      req.resume();
      req.on("end", () => res.end("read it all"));
    });
    const h = await startRouter({ limits: { maxBodyBytes: 1024 } });
    h.app("up", [be.port]);
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: h.port, method: "POST", agent: false, headers: { host: "up.localhost" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.write("a".repeat(600));
      req.write("b".repeat(600));
      req.end("c".repeat(600));
    });
    expect(status).toBe(413);
    await until(() => h.lines.length === 1);
    expect(h.lines[0]).toMatch(/code=H25 .*status=413/);
    // The router still serves after abandoning the upstream request.
    expect((await request(h.port, { host: "up.localhost", method: "POST", body: "small" })).body).toBe("read it all");
  });
});

describe("router: scale from zero", () => {
  it("holds requests while the app wakes, wakes once, then forwards them", async () => {
    let wakes = 0;
    let h!: Awaited<ReturnType<typeof startRouter>>;
    const waker: Waker = {
      async wake(appId) {
        wakes++;
        const be = await backend((_req, res) => res.end("awake"));
        // The control plane reports the new instance; the router hears it from the table.
        h.table.upsert(appRoute("sleepy", [be.port], { appId }));
      },
      stop: async () => {},
    };
    h = await startRouter({ waker });
    h.app("sleepy", []);
    const replies = await Promise.all([1, 2, 3].map(() => request(h.port, { host: "sleepy.localhost" })));
    expect(replies.map((r) => `${r.status} ${r.body}`)).toEqual(["200 awake", "200 awake", "200 awake"]);
    expect(wakes).toBe(1);
    expect(h.colds).toHaveLength(1);
    expect(h.colds[0]).toMatchObject(["id-sleepy", expect.any(Number), "zero"]);

    const admin = await h.router.listenAdmin(0, "127.0.0.1");
    const metrics = await request(admin.port, { host: "127.0.0.1", path: "/metrics" });
    expect(metrics.body).toContain('berth_router_requests_total{app="sleepy",app_id="id-sleepy",code="2xx"} 3');
    expect(metrics.body).toContain('berth_router_cold_starts_total{app="sleepy",app_id="id-sleepy",tier="zero"} 1');
    expect(metrics.body).toContain('berth_router_cold_start_duration_seconds_count{app="sleepy",app_id="id-sleepy",tier="zero"} 1');
    expect(metrics.body).toContain('berth_router_instances{app="sleepy",app_id="id-sleepy",state="ready"} 1');
    expect(metrics.body).toMatch(/berth_router_request_duration_seconds_bucket\{app="sleepy",app_id="id-sleepy",le="\+Inf"\} 3/);
    // The same endpoint on the public listener under the router's own host.
    const viaHost = await request(h.port, { host: "router.internal", path: "/metrics" });
    expect(viaHost.body).toContain("berth_router_in_flight_requests");
  });

  it("answers 503 H11 past the queue bound and 503 H20 after the boot timeout", async () => {
    const waker: Waker = { wake: async () => {}, stop: async () => {} }; // never becomes ready
    const h = await startRouter({ waker, limits: { maxQueue: 2, bootTimeoutMs: 400 } });
    h.app("stuck", []);
    const held = [request(h.port, { host: "stuck.localhost" }), request(h.port, { host: "stuck.localhost" })];
    await until(() => h.router.activator.queued("id-stuck") === 2, 2000, "two held requests");
    const overflow = await request(h.port, { host: "stuck.localhost", headers: { accept: "application/json" } });
    expect(overflow.status).toBe(503);
    expect(JSON.parse(overflow.body)).toMatchObject({ code: "H11" });
    const timedOut = await Promise.all(held);
    expect(timedOut.map((r) => r.status)).toEqual([503, 503]);
    expect(timedOut[0]!.body).toContain("H20");
    await until(() => h.lines.length === 3);
    expect(h.lines.filter((l) => l.includes("code=H20"))).toHaveLength(2);
    expect(h.lines.filter((l) => l.includes("code=H11"))).toHaveLength(1);
  });

  it("thaws an app the autoscaler froze before forwarding to it", async () => {
    const calls: string[] = [];
    const be = await backend((_req, res) => res.end("thawed"));
    const waker: Waker = {
      wake: async (id) => void calls.push(`wake ${id}`),
      freeze: async (id) => void calls.push(`freeze ${id}`),
      stop: async (id) => void calls.push(`stop ${id}`),
    };
    const h = await startRouter({ waker });
    h.app("icy", [be.port], { scale: { min: 0, max: 2, targetConcurrency: 10, idleFreezeMs: 1, idleStopMs: 0 } });
    await until(() => (h.router.autoscaler.tick(), calls.includes("freeze id-icy")), 2000, "freeze");
    expect(h.router.autoscaler.asleep("id-icy")).toBe("frozen");
    const r = await request(h.port, { host: "icy.localhost" });
    expect(r.body).toBe("thawed");
    expect(calls).toEqual(["freeze id-icy", "wake id-icy"]);
    expect(h.colds[0]).toMatchObject(["id-icy", expect.any(Number), "frozen"]);
  });
});

describe("router: shutdown", () => {
  it("lets an in-flight request finish on close", async () => {
    const be = await backend((_req, res) => setImmediate(() => res.end("done")));
    const h = await startRouter();
    h.app("drain", [be.port]);
    const pending = request(h.port, { host: "drain.localhost" });
    await until(() => be.seen.length === 1);
    const closed = h.router.close(2000);
    expect((await pending).body).toBe("done");
    await closed;
  });
});
