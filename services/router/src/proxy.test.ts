import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { backend, closeAll, startRouter } from "./harness.ts";
import { acceptWebsockets, closedPort, connectWebsocket, gate, request, until } from "./testkit.ts";

afterEach(closeAll);

const echoHeaders: http.RequestListener = (req, res) => {
  res.setHeader("content-type", "application/json");
  res.setHeader("keep-alive", "timeout=5");
  res.end(JSON.stringify(req.headers));
};

describe("router: headers", () => {
  it("sets X-Forwarded-*, X-Request-Id, X-Request-Start and Via, and strips hop-by-hop headers", async () => {
    const be = await backend(echoHeaders);
    const h = await startRouter();
    h.app("hdr", [be.port]);
    const before = Date.now();
    const rid = "abcdefghijklmnopqrstuvwxyz-0123456789";
    const r = await request(h.port, {
      host: "HDR.localhost:7780",
      headers: {
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https",
        "x-request-id": rid,
        connection: "close, x-hop",
        "x-hop": "secret",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        via: "1.0 cdn",
      },
    });
    expect(r.status).toBe(200);
    const got = JSON.parse(r.body) as Record<string, string>;
    expect(got["x-forwarded-for"]).toBe("203.0.113.7, 127.0.0.1");
    expect(got["x-forwarded-proto"]).toBe("http");
    expect(got["x-forwarded-port"]).toBe(String(h.port));
    expect(got["x-request-id"]).toBe(rid);
    expect(Number(got["x-request-start"])).toBeGreaterThanOrEqual(before);
    expect(Number(got["x-request-start"])).toBeLessThanOrEqual(Date.now());
    expect(got.via).toBe("1.0 cdn, 1.1 berth");
    expect(got.host).toBe("HDR.localhost:7780");
    expect(got["x-hop"]).toBeUndefined();
    expect(got["proxy-authorization"]).toBeUndefined();
    expect(r.headers.via).toBe("1.1 berth");
    expect(r.headers["keep-alive"]).toBeUndefined();

    const r2 = await request(h.port, { host: "hdr.localhost", headers: { "x-request-id": "too-short" } });
    expect(JSON.parse(r2.body)["x-request-id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  it("routes custom domains and writes Heroku-style access lines", async () => {
    const be = await backend((_req, res) => res.end("hello"));
    const h = await startRouter();
    h.app("shop", [be.port], { hosts: ["www.Shop.test"] });
    const r = await request(h.port, { host: "www.shop.test", path: "/a?b=1", headers: { "x-request-id": "r".repeat(24) } });
    expect(r.body).toBe("hello");
    await until(() => h.lines.length === 1, 2000, "access line");
    expect(h.lines[0]).toMatch(
      /^at=info method=GET path="\/a\?b=1" host=www\.shop\.test request_id=r{24} fwd="127\.0\.0\.1" dyno=web\.1 connect=\d+ms service=\d+ms status=200 bytes=5 protocol=http$/,
    );
  });
});

describe("router: balancing", () => {
  it("sends new requests to the instance with the fewest outstanding", async () => {
    const hold = gate();
    const slow = await backend(async (_req, res) => {
      await hold.promise;
      res.end("slow");
    });
    const fast = await backend((_req, res) => res.end("fast"));
    const h = await startRouter();
    h.app("lb", [slow.port, fast.port]);
    const first = request(h.port, { host: "lb.localhost" });
    await until(() => slow.seen.length === 1, 2000, "slow backend to get the first request");
    for (let i = 0; i < 4; i++) expect((await request(h.port, { host: "lb.localhost" })).body).toBe("fast");
    hold.open();
    expect((await first).body).toBe("slow");
    // Idle again: ties rotate, so both instances get work.
    const bodies = new Set<string>();
    for (let i = 0; i < 4; i++) bodies.add((await request(h.port, { host: "lb.localhost" })).body);
    expect(bodies).toEqual(new Set(["slow", "fast"]));
  });
});

describe("router: streaming", () => {
  it("delivers a chunked response's first chunk before the app ends it", async () => {
    const hold = gate();
    const be = await backend(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first;");
      await hold.promise;
      res.end("last");
    });
    const h = await startRouter();
    h.app("stream", [be.port]);
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: h.port, agent: false, headers: { host: "stream.localhost" } }, (res) => {
        expect(res.headers["transfer-encoding"]).toBe("chunked");
        let all = "";
        res.on("data", (c: Buffer) => {
          if (all === "") {
            expect(c.toString()).toBe("first;");
            hold.open(); // only now may the app finish
          }
          all += c.toString();
        });
        res.on("end", () => resolve(all));
      });
      req.on("error", reject);
      req.end();
    });
    expect(body).toBe("first;last");
  });

  it("streams the request body to the app as it arrives", async () => {
    const received: string[] = [];
    const be = await backend((req, res) => {
      req.on("data", (c: Buffer) => received.push(c.toString()));
      req.on("end", () => res.end(received.join("")));
    });
    const h = await startRouter();
    h.app("upload", [be.port]);
    const done = new Promise<string>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: h.port, method: "POST", agent: false, headers: { host: "upload.localhost" } }, (res) => {
        let s = "";
        res.on("data", (c: Buffer) => (s += c));
        res.on("end", () => resolve(s));
      });
      req.on("error", reject);
      req.write("part1;");
      until(() => received.length > 0, 2000, "first part at the app").then(() => req.end("part2"), reject);
    });
    expect(await done).toBe("part1;part2");
    expect(received[0]).toBe("part1;");
  });
});

describe("router: upstream connections", () => {
  it("keeps one connection to the app for consecutive requests, and forwards HEAD and bodies", async () => {
    let connections = 0;
    const be = await backend((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c));
      req.on("end", () => {
        res.setHeader("content-type", "text/plain");
        res.end(`${req.method} ${req.headers["content-length"] ?? "-"} ${req.headers["transfer-encoding"] ?? "-"} ${body}`);
      });
    });
    be.server.on("connection", () => connections++);
    const h = await startRouter();
    h.app("reuse", [be.port]);
    for (let i = 0; i < 3; i++) expect((await request(h.port, { host: "reuse.localhost" })).body).toBe("GET - - ");
    const head = await request(h.port, { host: "reuse.localhost", method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect((await request(h.port, { host: "reuse.localhost", method: "POST", body: "sized" })).body).toBe("POST 5 - sized");
    const chunked = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: h.port, method: "PUT", agent: false, headers: { host: "reuse.localhost" } }, (res) => {
        let s = "";
        res.on("data", (c: Buffer) => (s += c));
        res.on("end", () => resolve(s));
      });
      req.on("error", reject);
      req.write("a");
      req.end("b");
    });
    expect(chunked).toBe("PUT - chunked ab");
    expect(connections).toBe(1);
  });

  it("retries on a fresh connection when a reused one turns out closed", async () => {
    // Answers the first request on each connection, drops the connection on the second:
    // the race between an app closing an idle keep-alive connection and the router reusing it.
    const app = net.createServer((s) => {
      let served = 0;
      s.on("error", () => {});
      s.on("data", () => {
        if (++served === 1) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        else s.destroy();
      });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    try {
      const h = await startRouter();
      h.app("racy", [(app.address() as net.AddressInfo).port]);
      for (let i = 0; i < 3; i++) {
        const r = await request(h.port, { host: "racy.localhost" });
        expect(`${r.status} ${r.body}`).toBe("200 ok");
      }
      await until(() => h.lines.length === 3);
      expect(h.lines.every((l) => l.startsWith("at=info") && l.includes("status=200"))).toBe(true);
    } finally {
      app.close();
    }
  });

  it("streams a large response with backpressure", async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, "x");
    const be = await backend((_req, res) => res.end(big));
    const h = await startRouter();
    h.app("big", [be.port]);
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: h.port, agent: false, headers: { host: "big.localhost" } }, (res) => {
        let n = 0;
        res.pause();
        // A slow reader: the router must hold the app back, not buffer everything.
        setTimeout(() => {
          res.on("data", (c: Buffer) => (n += c.length));
          res.on("end", () => resolve(n));
          res.resume();
        }, 50);
      });
      req.on("error", reject);
      req.end();
    });
    expect(got).toBe(big.length);
    await until(() => h.lines.length === 1);
    expect(h.lines[0]).toMatch(new RegExp(`status=200 bytes=${big.length} `));
  });
});

describe("router: websockets", () => {
  it("pipes an upgraded connection both ways", async () => {
    const be = await backend((_req, res) => res.end("plain"));
    acceptWebsockets(be.server);
    const h = await startRouter();
    h.app("ws", [be.port]);
    const ws = await connectWebsocket(h.port, "ws.localhost", "/socket");
    expect(ws.status).toBe(101);
    expect(ws.headers.upgrade).toBe("websocket");
    ws.send("hello");
    expect(await ws.next()).toBe("echo:hello");
    ws.send("x".repeat(300));
    expect(await ws.next()).toBe(`echo:${"x".repeat(300)}`);
    ws.close();
    await until(() => h.lines.length === 1, 2000, "access line");
    expect(h.lines[0]).toMatch(/path="\/socket" .*status=101/);
    expect(be.seen).toHaveLength(0);
  });

  it("answers an upgrade for an unknown host with 404 and closes", async () => {
    const h = await startRouter();
    await expect(connectWebsocket(h.port, "nope.localhost")).rejects.toThrow(/404/);
  });
});

describe("router: failures", () => {
  it("answers 504 H12 when the app takes longer than the app's timeout", async () => {
    const be = await backend(() => {});
    const h = await startRouter();
    h.app("slow", [be.port], { timeoutMs: 200 });
    const t0 = Date.now();
    const r = await request(h.port, { host: "slow.localhost" });
    expect(r.status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r.body).toContain("H12");
    await until(() => h.lines.length === 1);
    expect(h.lines[0]).toMatch(/^at=error code=H12 desc="Request timeout" .* dyno=web\.1 .*status=504/);
  });

  it("answers 404 No such app for unknown hosts, as HTML or JSON", async () => {
    const h = await startRouter();
    const html = await request(h.port, { host: "ghost.localhost" });
    expect(html.status).toBe(404);
    expect(html.headers["content-type"]).toMatch(/text\/html/);
    expect(html.body).toContain("No such app");
    const json = await request(h.port, { host: "ghost.localhost", headers: { accept: "application/json" } });
    expect(json.status).toBe(404);
    expect(JSON.parse(json.body)).toMatchObject({ id: "not_found", request_id: json.headers["x-request-id"] });
  });

  it("answers 503 with the maintenance page", async () => {
    const be = await backend((_req, res) => res.end("should not"));
    const h = await startRouter();
    h.app("maint", [be.port], { maintenance: true });
    const r = await request(h.port, { host: "maint.localhost" });
    expect(r.status).toBe(503);
    expect(r.body).toContain("Maintenance");
    expect(be.seen).toHaveLength(0);
    await until(() => h.lines.length === 1);
    expect(h.lines[0]).toMatch(/^at=info code=H80 desc="Maintenance mode"/);
  });

  it("answers 503 H14 without waking an app scaled to web=0 (max 0)", async () => {
    let wakes = 0;
    const h = await startRouter({ waker: { wake: async () => void wakes++, stop: async () => {} } });
    h.app("off", [], { scale: { min: 0, max: 0, targetConcurrency: 10, idleFreezeMs: 0, idleStopMs: 0 } });
    const r = await request(h.port, { host: "off.localhost" });
    expect(r.status).toBe(503);
    expect(wakes).toBe(0);
    await until(() => h.lines.length === 1);
    expect(h.lines[0]).toMatch(/^at=error code=H14 desc="No web dynos running"/);
  });

  it("retries another instance when one refuses, and answers 503 H10 when all do", async () => {
    const dead = await closedPort();
    const be = await backend((_req, res) => res.end("alive"));
    const h = await startRouter();
    h.app("mixed", [dead, be.port]);
    for (let i = 0; i < 3; i++) expect((await request(h.port, { host: "mixed.localhost" })).body).toBe("alive");
    h.app("down", [dead]);
    const r = await request(h.port, { host: "down.localhost" });
    expect(r.status).toBe(503);
    await until(() => h.lines.some((l) => l.includes("host=down.localhost")));
    expect(h.lines.find((l) => l.includes("host=down.localhost"))).toMatch(/^at=error code=H10 /);
  });

  it("answers 502 H17 to a malformed backend response", async () => {
    const bad = net.createServer((s) => {
      s.on("data", () => s.end("THIS IS NOT HTTP\r\n\r\n"));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => bad.listen(0, "127.0.0.1", r));
    const h = await startRouter();
    h.app("bad", [(bad.address() as net.AddressInfo).port]);
    const r = await request(h.port, { host: "bad.localhost" });
    expect(r.status).toBe(502);
    expect(r.body).toContain("H17");
    bad.close();
  });

  it("breaks the client's stream when the app dies mid-response, and keeps serving", async () => {
    const be = await backend((req, res) => {
      if (req.url === "/die") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("partial");
        setImmediate(() => res.socket?.destroy());
      } else res.end("ok");
    });
    const h = await startRouter();
    h.app("crashy", [be.port]);
    const outcome = await new Promise<string>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: h.port, path: "/die", agent: false, headers: { host: "crashy.localhost" } }, (res) => {
        res.on("data", () => {});
        res.on("error", () => resolve("error"));
        res.on("end", () => resolve(res.complete ? "complete" : "incomplete"));
        res.on("close", () => resolve(res.complete ? "complete" : "incomplete"));
      });
      req.on("error", () => resolve("error"));
      req.end();
    });
    expect(outcome).not.toBe("complete");
    expect((await request(h.port, { host: "crashy.localhost" })).body).toBe("ok");
    await until(() => h.lines.some((l) => l.includes("code=H18")));
  });

  it("keeps an in-flight request on its instance while the route changes", async () => {
    const hold = gate();
    const a = await backend(async (_req, res) => {
      await hold.promise;
      res.end("from-a");
    });
    const b = await backend((_req, res) => res.end("from-b"));
    const h = await startRouter();
    h.app("moving", [a.port]);
    const inflight = request(h.port, { host: "moving.localhost" });
    await until(() => a.seen.length === 1);
    h.app("moving", [b.port]);
    expect((await request(h.port, { host: "moving.localhost" })).body).toBe("from-b");
    hold.open();
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(r.body).toBe("from-a");
  });

  it("survives garbage from a client", async () => {
    const be = await backend((_req, res) => res.end("fine"));
    const h = await startRouter();
    h.app("fine", [be.port]);
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect(h.port, "127.0.0.1", () => s.write("BLAH\x00\r\n\r\n"));
      let got = "";
      s.on("data", (c) => (got += c));
      s.on("close", () => resolve(got));
      s.on("error", () => resolve(got));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await request(h.port, { host: "fine.localhost" })).body).toBe("fine");
  });
});
