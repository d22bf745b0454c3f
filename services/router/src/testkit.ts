/**
 * Test helpers for the router's socket tests: real backends on 127.0.0.1, a tiny
 * websocket framer (RFC 6455, text frames only) and a client that sets any Host.
 * Not imported by production code.
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, OutgoingHttpHeaders, RequestListener } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";

export interface Backend {
  server: http.Server;
  port: number;
  /** Requests seen, in order. */
  seen: IncomingMessage[];
  close(): Promise<void>;
}

export async function startBackend(handler: RequestListener): Promise<Backend> {
  const seen: IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  // Upgraded sockets are not the http server's any more; track every socket to close them all.
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function request(
  port: number,
  opts: { host: string; path?: string; method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method: opts.method ?? "GET", path: opts.path ?? "/", agent: false, headers: { host: opts.host, ...opts.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** Poll `cond` until true or `ms` elapse (for state that changes without an event to await). */
export async function until(cond: () => boolean, ms = 3000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A promise and its resolver, for releasing held backend responses. */
export function gate(): { promise: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export function encodeFrame(text: string, mask: boolean): Buffer {
  const payload = Buffer.from(text);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, (mask ? 0x80 : 0) | len]) : Buffer.from([0x81, (mask ? 0x80 : 0) | 126, len >> 8, len & 0xff]);
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([head, key, masked]);
}

/** Decode complete frames from `buf`; returns texts and the unconsumed rest. */
export function decodeFrames(buf: Buffer): { texts: string[]; rest: Buffer } {
  const texts: string[] = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b1 = buf[off + 1]!;
    const masked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (buf.length - p < 2) break;
      len = buf.readUInt16BE(p);
      p += 2;
    }
    const keyLen = masked ? 4 : 0;
    if (buf.length - p < keyLen + len) break;
    const key = buf.subarray(p, p + keyLen);
    const data = Buffer.from(buf.subarray(p + keyLen, p + keyLen + len));
    if (masked) for (let i = 0; i < data.length; i++) data[i]! ^= key[i % 4]!;
    texts.push(data.toString());
    off = p + keyLen + len;
  }
  return { texts, rest: buf.subarray(off) };
}

/** Make `server` accept websockets and echo every text frame back prefixed with "echo:". */
export function acceptWebsockets(server: http.Server): void {
  server.on("upgrade", (req: IncomingMessage, socket: Duplex) => {
    const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}${WS_GUID}`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    let pending: Buffer = Buffer.alloc(0);
    socket.on("data", (c: Buffer) => {
      const { texts, rest } = decodeFrames(Buffer.concat([pending, c]));
      pending = rest;
      for (const t of texts) socket.write(encodeFrame(`echo:${t}`, false));
    });
    socket.on("error", () => socket.destroy());
  });
}

export interface WsClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  send(text: string): void;
  next(): Promise<string>;
  close(): void;
  socket: Socket;
}

/** Open a websocket through the router with the given Host. */
export function connectWebsocket(port: number, host: string, path = "/"): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString("base64");
    const req = http.request({
      host: "127.0.0.1",
      port,
      path,
      agent: false,
      headers: { host, connection: "Upgrade", upgrade: "websocket", "sec-websocket-key": key, "sec-websocket-version": "13" },
    });
    req.on("error", reject);
    req.on("response", (res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    req.on("upgrade", (res, socket: Socket, head: Buffer) => {
      let buf: Buffer = head;
      const queue: string[] = [];
      const waiting: ((t: string) => void)[] = [];
      const drain = () => {
        const { texts, rest } = decodeFrames(buf);
        buf = rest;
        queue.push(...texts);
        while (queue.length && waiting.length) waiting.shift()!(queue.shift()!);
      };
      socket.on("data", (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        drain();
      });
      socket.on("error", () => {});
      drain();
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        socket,
        send: (t) => socket.write(encodeFrame(t, true)),
        next: () =>
          new Promise<string>((r) => {
            waiting.push(r);
            drain();
          }),
        close: () => socket.destroy(),
      });
    });
    req.end();
  });
}
