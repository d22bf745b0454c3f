import http from "node:http";
import net from "node:net";
import { ManualClock, systemClock, type Clock } from "@berth/core";
import { afterEach, describe, expect, it } from "vitest";
import { closedPort, until } from "./testkit.ts";
import { UpstreamPool, type UpstreamConn, type UpstreamExchange } from "./upstream.ts";

/** An exchange that records what the connection tells it. */
class Recorder implements UpstreamExchange {
  readonly events: string[] = [];
  status = 0;
  raw: string[] = [];
  readonly chunks: Buffer[] = [];
  conn: UpstreamConn | undefined;
  readonly #done = Promise.withResolvers<void>();
  readonly finished = this.#done.promise;
  readonly head: string;
  readonly opts: { noBody: boolean; chunked: boolean; hasBody: boolean };
  readonly body: Buffer[];

  constructor(head = "GET / HTTP/1.1\r\nhost: app\r\n\r\n", opts: Partial<Recorder["opts"]> = {}, body: Buffer[] = []) {
    this.head = head;
    this.opts = { noBody: false, chunked: false, hasBody: body.length > 0, ...opts };
    this.body = body;
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString();
  }
  upstreamReady(conn: UpstreamConn): void {
    this.conn = conn;
    this.events.push(conn.reused ? "ready reused" : "ready");
    conn.send(this.head, this.opts);
    for (const b of this.body) conn.writeBody(b);
    if (this.opts.hasBody) conn.endBody();
  }
  upstreamConnectFailed(code: string): void {
    this.events.push(`connect failed ${code}`);
    this.#done.resolve();
  }
  upstreamHead(status: number, raw: string[]): void {
    this.status = status;
    this.raw = raw;
    this.events.push(`head ${status}`);
  }
  upstreamBody(chunk: Buffer | undefined, done: boolean): void {
    if (chunk) this.chunks.push(chunk);
    if (done) {
      this.events.push("done");
      this.#done.resolve();
    }
  }
  upstreamFailed(code: string): void {
    this.events.push(`failed ${code}`);
    this.#done.resolve();
  }
  upstreamIdle(): void {
    this.events.push("idle");
    this.conn?.abandon();
    this.#done.resolve();
  }
  upstreamDrain(): void {}
}

interface RawServer {
  port: number;
  connections: number;
  heads: string[];
  close(): Promise<void>;
}

const servers: RawServer[] = [];
const pools: UpstreamPool[] = [];

/** A TCP server that answers each request head (bodies are ignored) with `answer`'s writes. */
async function rawServer(answer: (n: number, head: string) => (string | Buffer | number)[]): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const srv: RawServer = { port: 0, connections: 0, heads: [], close: async () => {} };
  const server = net.createServer((s) => {
    srv.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    let buf = "";
    s.on("data", async (c: Buffer) => {
      buf += c.toString("latin1");
      let end: number;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        srv.heads.push(head);
        // Numbers are pauses (ms) between writes, so a response can arrive in pieces; "END" closes.
        for (const part of answer(srv.heads.length, head)) {
          if (typeof part === "number") await new Promise((r) => setTimeout(r, part));
          else if (part === "END") s.end();
          else if (!s.destroyed) s.write(part);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  srv.port = (server.address() as net.AddressInfo).port;
  srv.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  servers.push(srv);
  return srv;
}

function pool(opts: { maxSockets?: number; maxFreeSockets?: number; idleTimeoutMs?: number; clock?: Clock } = {}): UpstreamPool {
  const p = new UpstreamPool({ maxSockets: 10, maxFreeSockets: 10, idleTimeoutMs: 5_000, clock: systemClock, ...opts });
  pools.push(p);
  return p;
}

const key = (port: number) => `127.0.0.1:${port}`;

/** Acquire for `ex` and start it, as the proxy does; resolves when the exchange is over. */
function run(p: UpstreamPool, port: number, ex: Recorder): Promise<void> {
  const c = p.acquire(key(port), "127.0.0.1", port, ex);
  if (c) ex.upstreamReady(c);
  return ex.finished;
}

afterEach(async () => {
  for (const p of pools.splice(0)) p.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

describe("upstream pool", () => {
  it("reads a Content-Length response and reuses the connection", async () => {
    const srv = await rawServer(() => [OK]);
    const p = pool();
    const a = new Recorder();
    await run(p, srv.port, a);
    expect(a.events).toEqual(["ready", "head 200", "done"]);
    expect(a.raw).toEqual(["Content-Length", "5", "Content-Type", "text/plain"]);
    expect(a.text).toBe("hello");
    expect(p.stats(key(srv.port))).toEqual({ busy: 0, free: 1, waiting: 0 });
    const b = new Recorder();
    await run(p, srv.port, b);
    expect(b.events).toEqual(["ready reused", "head 200", "done"]);
    expect(srv.connections).toBe(1);
  });

  it("decodes a chunked body that arrives in pieces, skipping extensions and trailers", async () => {
    const srv = await rawServer(() => [
      "HTTP/1.1 200 OK\r\nTransfer-",
      5,
      "Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
      5,
      "lo\r\n",
      "6\r\n world\r\n0\r\nX-Trailer: t\r\n",
      5,
      "\r\n",
    ]);
    const p = pool();
    const ex = new Recorder();
    await run(p, srv.port, ex);
    expect(ex.events).toEqual(["ready", "head 200", "done"]);
    expect(ex.text).toBe("hello world");
    expect(p.stats(key(srv.port)).free).toBe(1);
  });

  it("reads a body delimited by close, and does not pool that connection", async () => {
    const srv = await rawServer(() => ["HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", 5, "close", "END"]);
    const p = pool();
    const ex = new Recorder();
    await run(p, srv.port, ex);
    expect(ex.text).toBe("until close");
    expect(ex.events.at(-1)).toBe("done");
    await until(() => p.stats(key(srv.port)).busy === 0);
    expect(p.stats(key(srv.port)).free).toBe(0);
  });

  it("expects no body after HEAD, 204 and 304, and skips 1xx interim responses", async () => {
    const srv = await rawServer((n) =>
      n === 1 ? ["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"] : n === 2 ? ["HTTP/1.1 204 No Content\r\n\r\n"] : ["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", 5, "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"],
    );
    const p = pool();
    const head = new Recorder("HEAD / HTTP/1.1\r\nhost: app\r\n\r\n", { noBody: true });
    await run(p, srv.port, head);
    expect(head.events).toEqual(["ready", "head 200", "done"]);
    const noContent = new Recorder();
    await run(p, srv.port, noContent);
    expect(noContent.events).toEqual(["ready reused", "head 204", "done"]);
    const notModified = new Recorder();
    await run(p, srv.port, notModified);
    expect(notModified.events).toEqual(["ready reused", "head 304", "done"]);
    expect(notModified.raw).toEqual(["ETag", "x"]);
    expect(srv.connections).toBe(1);
  });

  it("closes connections the app asked to close or whose Keep-Alive time is up", async () => {
    const srv = await rawServer((n) => [n === 1 ? "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" : "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 0\r\n\r\n"]);
    const p = pool();
    await run(p, srv.port, new Recorder());
    await run(p, srv.port, new Recorder());
    expect(srv.connections).toBe(2);
    await until(() => p.stats(key(srv.port)).busy === 0);
    expect(p.stats(key(srv.port)).free).toBe(0);
  });

  it("reports malformed responses as HPE_* and never reuses the connection", async () => {
    const cases: [string, string][] = [
      ["THIS IS NOT HTTP\r\n\r\n", "HPE_INVALID_CONSTANT"],
      ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "HPE_UNEXPECTED_CONTENT_LENGTH"],
      ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "HPE_UNEXPECTED_CONTENT_LENGTH"],
      ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HPE_INVALID_CONTENT_LENGTH"],
      ["HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
      ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HPE_INVALID_CHUNK_SIZE"],
      ["HTTP/1.1 101 Switching Protocols\r\n\r\n", "HPE_INVALID_STATUS"],
    ];
    for (const [answer, code] of cases) {
      const srv = await rawServer(() => [answer]);
      const p = pool();
      const ex = new Recorder();
      await run(p, srv.port, ex);
      expect(ex.events.at(-1), answer).toBe(`failed ${code}`);
      await until(() => p.stats(key(srv.port)).busy === 0);
      expect(p.stats(key(srv.port)).free).toBe(0);
    }
  });

  it("reports a connection that breaks mid-body, and one that cannot be opened", async () => {
    const srv = await rawServer(() => ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 5, "END"]);
    const p = pool();
    const ex = new Recorder();
    await run(p, srv.port, ex);
    expect(ex.events).toEqual(["ready", "head 200", "failed ECONNRESET"]);
    expect(ex.text).toBe("abc");
    const dead = await closedPort();
    const refused = new Recorder();
    await run(p, dead, refused);
    expect(refused.events).toEqual(["connect failed ECONNREFUSED"]);
    expect(p.stats(key(dead))).toEqual({ busy: 0, free: 0, waiting: 0 });
  });

  it("forgets a pooled connection the app closes", async () => {
    const srv = await rawServer(() => [OK]);
    const p = pool();
    const first = new Recorder();
    await run(p, srv.port, first);
    await srv.close();
    await until(() => p.stats(key(srv.port)).free === 0);
    expect(first.conn!.socket.destroyed).toBe(true);
  });

  it("shows a reused connection that broke before any response byte (safe to retry)", async () => {
    const srv = await rawServer((n) => (n === 1 ? [OK] : ["END"]));
    const p = pool();
    await run(p, srv.port, new Recorder());
    const second = new Recorder();
    await run(p, srv.port, second);
    expect(second.events).toEqual(["ready reused", "failed ECONNRESET"]);
    expect(second.conn!.reused).toBe(true);
    expect(second.conn!.responseStarted).toBe(false);
  });

  it("queues requests beyond maxSockets and hands them the connection that frees up", async () => {
    const srv = await rawServer(() => [20, OK]);
    const p = pool({ maxSockets: 1 });
    const a = new Recorder();
    const b = new Recorder();
    const c = new Recorder();
    const pa = run(p, srv.port, a);
    const pb = run(p, srv.port, b);
    run(p, srv.port, c);
    expect(p.stats(key(srv.port))).toEqual({ busy: 1, free: 0, waiting: 2 });
    p.cancel(key(srv.port), c);
    expect(p.stats(key(srv.port)).waiting).toBe(1);
    await Promise.all([pa, pb]);
    expect(b.events).toEqual(["ready reused", "head 200", "done"]);
    expect(c.events).toEqual([]);
    expect(srv.connections).toBe(1);
  });

  it("frames a request body as chunked when asked to", async () => {
    const seen: string[] = [];
    const app = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c));
      req.on("end", () => {
        seen.push(`${req.headers["transfer-encoding"]} ${body}`);
        res.end("ok");
      });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    const port = (app.address() as net.AddressInfo).port;
    try {
      const p = pool();
      const ex = new Recorder("POST / HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n", { chunked: true }, [Buffer.from("part1;"), Buffer.from("part2")]);
      await run(p, port, ex);
      expect(ex.text).toBe("ok");
      expect(seen).toEqual(["chunked part1;part2"]);
      expect(p.stats(key(port)).free).toBe(1);
      p.close();
    } finally {
      app.closeAllConnections();
      await new Promise<void>((r) => app.close(() => r()));
    }
  });

  it("tells the exchange when a flowing response goes quiet", async () => {
    const srv = await rawServer(() => ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
    const p = pool({ idleTimeoutMs: 100 });
    const ex = new Recorder();
    await run(p, srv.port, ex);
    expect(ex.events).toEqual(["ready", "head 200", "idle"]);
  });

  it("closes connections left idle in the pool for idleTimeoutMs, with one timer", async () => {
    const clock = new ManualClock(1_000);
    const srv = await rawServer(() => [OK]);
    const p = pool({ clock, idleTimeoutMs: 5_000 });
    await run(p, srv.port, new Recorder());
    expect(p.stats(key(srv.port)).free).toBe(1);
    expect(clock.pendingTimers()).toBe(1);
    clock.advance(4_000);
    expect(p.stats(key(srv.port)).free).toBe(1);
    clock.advance(5_000);
    await until(() => p.stats(key(srv.port)).free === 0);
    expect(clock.pendingTimers()).toBe(0);
  });
});
