/**
 * The router's HTTP/1.1 client to app instances: a keep-alive pool per instance address
 * and a response parser, both made for forwarding.
 *
 * Why not http.request: per request it builds a ClientRequest, asks the agent for a socket,
 * validates every header, and streams the answer through an IncomingMessage. Measured
 * under the bench's load that was about three quarters of the router's CPU per request.
 * Here a request is one write of a prebuilt head, and the response arrives as method
 * calls on the exchange that owns the connection: no emitter, stream or closure per request.
 *
 * Invariants:
 * - A connection carries one exchange at a time (no pipelining). It goes back to the
 *   pool only when the request and the response are both complete and neither side asked
 *   to close; otherwise it is destroyed.
 * - Once an exchange abandons a connection, or has been told the response is done, it
 *   hears nothing more from it.
 * - Response framing follows RFC 9112 §6.3. Anything ambiguous (Content-Length with
 *   Transfer-Encoding, differing lengths, obs-fold, a bad chunk size) is an error named
 *   like llhttp's ("HPE_…"), never a guess: a confused connection is never reused.
 */
import net, { type Socket } from "node:net";
import type { Clock, TimerHandle } from "@berth/core";

/** What the exchange that owns a connection hears from it. */
export interface UpstreamExchange {
  /** The connection is open and the request may be written (at once for a pooled one). */
  upstreamReady(conn: UpstreamConn): void;
  /** The connection could not be opened: nothing reached the app. */
  upstreamConnectFailed(code: string): void;
  /** Status and headers of the final response; `raw` is a flat [name, value, …] list. */
  upstreamHead(status: number, raw: string[]): void;
  /** A piece of the decoded body; `done` marks the last call (the chunk may be absent). */
  upstreamBody(chunk: Buffer | undefined, done: boolean): void;
  /** The connection broke before the response was done (socket code, or HPE_* for a malformed response). */
  upstreamFailed(code: string): void;
  /** Nothing moved either way for idleTimeoutMs after the response started. */
  upstreamIdle(): void;
  /** The request body can be written again after `writeBody` returned false. */
  upstreamDrain(): void;
}

export interface UpstreamOptions {
  /** Connections (busy and connecting) per instance; more requests wait in line. */
  maxSockets: number;
  /** Idle connections kept per instance. */
  maxFreeSockets: number;
  /** Socket inactivity that ends a flowing response (H15) or closes a pooled connection. */
  idleTimeoutMs: number;
  clock: Clock;
}

/** Size of the one buffer every connection of a pool reads into (node's default read size). */
const READ_BUFFER_BYTES = 64 * 1024;
/** Largest response head accepted, as node's own client (--max-http-header-size). */
const MAX_HEAD_BYTES = 16 * 1024;
/** Chunk extensions and trailers are skipped, up to this much per message. */
const MAX_SKIPPED_BYTES = 16 * 1024;

// Parser states; typed number so a switch on the state does not narrow it for the code after a call.
const HEAD: number = 0;
const FIXED: number = 1;
const CHUNK_SIZE: number = 2;
const CHUNK_EXT: number = 3;
const CHUNK_SIZE_LF: number = 4;
const CHUNK_DATA: number = 5;
const CHUNK_DATA_CR: number = 6;
const CHUNK_DATA_LF: number = 7;
const TRAILERS: number = 8;
const UNTIL_CLOSE: number = 9;
const DONE: number = 10;
/** In the pool, or before its first request. */
const IDLE: number = 11;

const CR = 13;
const LF = 10;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;
const DIGITS = /^\d{1,15}$/;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

let lastKeepAlive = "";
let lastKeepFor = Infinity;

/**
 * How long a pooled connection may be reused after a response with this Keep-Alive
 * value: like node's agent, until a second before the app's stated timeout. An app
 * sends the same value every time, so the last one is remembered.
 */
function keepAliveFor(value: string): number {
  if (value === lastKeepAlive) return lastKeepFor;
  const m = /(?:^|[\s,;])timeout=(\d+)/i.exec(value);
  lastKeepAlive = value;
  lastKeepFor = m ? Number(m[1]) * 1000 - 1000 : Infinity;
  return lastKeepFor;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** One instance address: its idle connections (a LIFO stack), busy count and waiting line. */
class Backend {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly free: UpstreamConn[] = [];
  /** Connections not yet open, each already promised to an exchange. */
  readonly connecting: UpstreamConn[] = [];
  /** Connections that are connecting or carry an exchange. */
  busy = 0;
  readonly waiting: UpstreamExchange[] = [];
  constructor(key: string, host: string, port: number) {
    this.key = key;
    this.host = host;
    this.port = port;
  }
}

/** Keep-alive connections to app instances, keyed by "host:port". */
export class UpstreamPool {
  readonly #o: UpstreamOptions;
  readonly #backends = new Map<string, Backend>();
  /**
   * Every connection reads into this one buffer (net's `onread`): a read is parsed before
   * the next can arrive, and whatever outlives the callback is copied out. It saves a
   * buffer and a trip through the Readable stream machinery per read.
   */
  readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  #closed = false;
  #sweep: TimerHandle | undefined;
  readonly #onSweep = () => this.#sweepIdle();

  constructor(opts: UpstreamOptions) {
    this.#o = opts;
  }

  /**
   * A connection for `ex` to the instance: a pooled one that is ready now (the caller
   * goes on as on upstreamReady), or undefined when one is being opened or `ex` waits in
   * line (upstreamReady or upstreamConnectFailed follows, unless `cancel` comes first).
   */
  acquire(key: string, host: string, port: number, ex: UpstreamExchange): UpstreamConn | undefined {
    let b = this.#backends.get(key);
    if (!b) this.#backends.set(key, (b = new Backend(key, host, port)));
    if (b.free.length > 0) {
      const now = this.#o.clock.now();
      let c: UpstreamConn | undefined;
      while ((c = b.free.pop())) {
        if (c.expiresAt > now && !c.socket.destroyed) {
          c.pooled = false;
          b.busy++;
          c.assign(ex);
          return c;
        }
        c.destroy(); // still marked pooled: its close must not count it as busy
      }
    }
    if (b.busy < this.#o.maxSockets) this.#open(b, ex);
    else b.waiting.push(ex);
    return undefined;
  }

  /** `ex` gives up before its connection was ready: leave the line, or drop the connection being opened for it. */
  cancel(key: string, ex: UpstreamExchange): void {
    const b = this.#backends.get(key);
    if (!b) return;
    const i = b.waiting.indexOf(ex);
    if (i >= 0) {
      b.waiting.splice(i, 1);
      this.#forget(b);
      return;
    }
    for (const c of b.connecting) if (c.owner === ex) c.destroy();
  }

  /** Connections per state, for tests and debugging. */
  stats(key: string): { busy: number; free: number; waiting: number } {
    const b = this.#backends.get(key);
    return { busy: b?.busy ?? 0, free: b?.free.length ?? 0, waiting: b?.waiting.length ?? 0 };
  }

  /** Destroy idle connections now and every busy one as it finishes. */
  close(): void {
    this.#closed = true;
    if (this.#sweep) this.#o.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const b of [...this.#backends.values()]) for (const c of [...b.free]) c.destroy();
  }

  // The three methods below are the connections' side of the books (UpstreamConn calls them).

  /** A connection finished an exchange cleanly; `keepFor` is how long the app keeps it open (ms). */
  release(c: UpstreamConn, b: Backend, keepFor: number): void {
    if (this.#closed || keepFor <= 0) return c.destroy();
    const next = b.waiting.shift();
    if (next) {
      c.assign(next);
      next.upstreamReady(c);
      return;
    }
    if (b.free.length >= this.#o.maxFreeSockets) return c.destroy();
    const now = this.#o.clock.now();
    b.busy--;
    c.pooled = true;
    c.pooledAt = now;
    c.expiresAt = Number.isFinite(keepFor) ? now + keepFor : Infinity;
    b.free.push(c);
    this.#sweep ??= this.#o.clock.setTimeout(this.#onSweep, this.#o.idleTimeoutMs);
  }

  /**
   * One timer for the whole pool, not one per socket: close connections idle in the pool
   * for idleTimeoutMs (an instance that vanished without closing them, an app that never does).
   */
  #sweepIdle(): void {
    this.#sweep = undefined;
    const cutoff = this.#o.clock.now() - this.#o.idleTimeoutMs;
    let left = 0;
    for (const b of [...this.#backends.values()]) {
      for (const c of [...b.free]) {
        if (c.pooledAt <= cutoff) c.destroy();
        else left++;
      }
    }
    if (left > 0 && !this.#closed) this.#sweep = this.#o.clock.setTimeout(this.#onSweep, this.#o.idleTimeoutMs);
  }

  /** A new connection is open (or failed to open): it is no longer "connecting". */
  opened(c: UpstreamConn, b: Backend): void {
    const i = b.connecting.indexOf(c);
    if (i >= 0) b.connecting.splice(i, 1);
  }

  /** The socket closed: drop it from the books and open a connection for the next in line. */
  closed(c: UpstreamConn, b: Backend): void {
    this.opened(c, b);
    if (c.pooled) {
      c.pooled = false;
      const i = b.free.indexOf(c);
      if (i >= 0) b.free.splice(i, 1);
    } else b.busy--;
    while (b.waiting.length > 0 && b.busy < this.#o.maxSockets && !this.#closed) this.#open(b, b.waiting.shift()!);
    this.#forget(b);
  }

  #open(b: Backend, ex: UpstreamExchange): void {
    b.busy++;
    const c = new UpstreamConn(this, b, this.#o.idleTimeoutMs);
    c.assign(ex);
    b.connecting.push(c);
  }

  #forget(b: Backend): void {
    if (b.busy === 0 && b.free.length === 0 && b.waiting.length === 0 && this.#backends.get(b.key) === b) this.#backends.delete(b.key);
  }
}

/** One TCP connection to an instance, with the parser for the response it is reading. */
export class UpstreamConn {
  readonly socket: Socket;
  readonly #pool: UpstreamPool;
  readonly #backend: Backend;
  #ex: UpstreamExchange | undefined;
  /** Served an exchange before this one: a failure before any response byte may be a stale keep-alive socket. */
  reused = false;
  connected = false;
  /** Any byte of the current response arrived. */
  responseStarted = false;
  /** Pooled connections past this time are not reused (the app's Keep-Alive hint). */
  expiresAt = Infinity;
  /** In its backend's idle stack, since pooledAt. */
  pooled = false;
  pooledAt = 0;
  #served = 0;
  #state = IDLE;
  #partial: Buffer | undefined;
  #remaining = 0;
  #sizeDigits = 0;
  #skipped = 0;
  #lineLen = 0;
  #keepAlive = true;
  #keepFor = Infinity;
  #noBody = false;
  #chunkedRequest = false;
  #requestDone = false;
  #error: string | undefined;
  readonly #idleTimeoutMs: number;
  /** The socket's inactivity timer runs only while a response body streams. */
  #timing = false;

  constructor(pool: UpstreamPool, backend: Backend, idleTimeoutMs: number) {
    this.#pool = pool;
    this.#backend = backend;
    this.#idleTimeoutMs = idleTimeoutMs;
    const s = new net.Socket({ onread: { buffer: pool.readBuffer, callback: (n: number, buf: Uint8Array) => this.#onRead(n, buf) } });
    this.socket = s;
    // Listeners are per connection, not per request.
    s.on("connect", () => this.#onConnect());
    s.on("end", () => this.#onEnd());
    s.on("error", (err: Error & { code?: string }) => {
      this.#error ??= err.code ?? "ECONNRESET";
    });
    s.on("close", () => this.#onClose());
    s.on("timeout", () => this.#onTimeout());
    s.on("drain", () => this.#ex?.upstreamDrain());
    s.setNoDelay(true);
    s.connect(backend.port, backend.host);
  }

  /** The exchange the connection is promised to or carrying. */
  get owner(): UpstreamExchange | undefined {
    return this.#ex;
  }

  /** Hand the connection to an exchange (pool use only). */
  assign(ex: UpstreamExchange): void {
    this.#ex = ex;
    this.reused = this.#served > 0;
    this.responseStarted = false;
    this.#state = IDLE;
  }

  /**
   * Write the request head. `head` ends with the blank line; with `chunked` the body
   * that follows is framed here. `noBody` is set for HEAD requests (the response has none).
   */
  send(head: string, opts: { noBody: boolean; chunked: boolean; hasBody: boolean }): void {
    this.#state = HEAD;
    this.#noBody = opts.noBody;
    this.#chunkedRequest = opts.chunked;
    this.#requestDone = !opts.hasBody;
    this.#partial = undefined;
    this.#keepAlive = true;
    this.#keepFor = Infinity;
    this.socket.write(head, "latin1");
  }

  /** Write a piece of the request body; false means wait for upstreamDrain. */
  writeBody(chunk: Buffer): boolean {
    if (chunk.length === 0 || this.socket.destroyed) return true;
    const s = this.socket;
    if (!this.#chunkedRequest) return s.write(chunk);
    s.cork(); // one writev for size line, data and CRLF
    s.write(`${chunk.length.toString(16)}\r\n`, "latin1");
    s.write(chunk);
    const ok = s.write("\r\n", "latin1");
    s.uncork();
    return ok;
  }

  /** The request body is complete. */
  endBody(): void {
    if (this.#requestDone || this.socket.destroyed) return;
    this.#requestDone = true;
    if (this.#chunkedRequest) this.socket.write("0\r\n\r\n", "latin1");
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** The exchange gives up on this connection (timeout, client gone, bad response). */
  abandon(): void {
    this.#ex = undefined;
    this.socket.destroy();
  }

  destroy(): void {
    this.#ex = undefined;
    this.socket.destroy();
  }

  #onConnect(): void {
    this.connected = true;
    this.#pool.opened(this, this.#backend);
    this.#ex?.upstreamReady(this);
  }

  #onTimeout(): void {
    const ex = this.#ex;
    if (!ex) this.socket.destroy();
    // Before the head, the exchange's own response timeout (H12) governs.
    else if (this.responseStarted && this.#state !== HEAD) ex.upstreamIdle();
  }

  #onEnd(): void {
    const ex = this.#ex;
    if (ex && this.#state === UNTIL_CLOSE) {
      this.#state = DONE;
      this.#keepAlive = false;
      ex.upstreamBody(undefined, true);
      this.#finish();
    }
    // Anything else is reported by the close that follows.
  }

  #onClose(): void {
    const ex = this.#ex;
    this.#ex = undefined;
    this.#state = DONE;
    this.#pool.closed(this, this.#backend);
    if (!ex) return;
    if (!this.connected) ex.upstreamConnectFailed(this.#error ?? "ECONNRESET");
    else ex.upstreamFailed(this.#error ?? "ECONNRESET");
  }

  /** The response is complete: pool the connection or close it. */
  #finish(): void {
    this.#ex = undefined;
    if (this.#timing) {
      this.#timing = false;
      this.socket.setTimeout(0);
    }
    // An app that answers before reading the whole body leaves the connection mid-request.
    if (!this.#requestDone || !this.#keepAlive || this.socket.destroyed) return this.destroy();
    this.#served++;
    this.#state = IDLE;
    this.#pool.release(this, this.#backend, this.#keepFor);
  }

  /** A malformed response: tell the exchange, never reuse the connection. */
  #broken(code: string): void {
    const ex = this.#ex;
    this.#ex = undefined;
    this.#state = DONE;
    this.socket.destroy();
    ex?.upstreamFailed(code);
  }

  /**
   * `n` bytes arrived in the pool's shared buffer; nothing may keep a view of it past
   * this call. Returns true: reading pauses only through pause() (backpressure).
   */
  #onRead(n: number, shared: Uint8Array): boolean {
    const ex = this.#ex;
    if (!ex || this.#state === IDLE || this.#state === DONE) {
      // Bytes nobody asked for: the connection is out of step with the app.
      if (!ex || this.#state === IDLE) this.socket.destroy();
      return true;
    }
    this.responseStarted = true;
    const view = Buffer.from(shared.buffer, shared.byteOffset, n);
    this.#parse(this.#partial ? Buffer.concat([this.#partial, view]) : view, ex);
    // A body still to come: from here on, silence from the app is an idle connection (H15).
    if (this.#ex === ex && this.#state !== HEAD && !this.#timing) {
      this.#timing = true;
      this.socket.setTimeout(this.#idleTimeoutMs);
    }
    return true;
  }

  #parse(buf: Buffer, ex: UpstreamExchange): void {
    this.#partial = undefined;
    let off = 0;
    const len = buf.length;
    while (off < len) {
      switch (this.#state) {
        case HEAD: {
          const end = buf.indexOf("\r\n\r\n", off, "latin1");
          if (end < 0) {
            if (len - off > MAX_HEAD_BYTES) return this.#broken("HPE_HEADER_OVERFLOW");
            this.#partial = Buffer.from(buf.subarray(off)); // a copy: `buf` may be the shared buffer
            return;
          }
          if (end - off > MAX_HEAD_BYTES) return this.#broken("HPE_HEADER_OVERFLOW");
          const err = this.#head(buf.toString("latin1", off, end), ex);
          off = end + 4;
          if (err) return this.#broken(err);
          if (this.#ex !== ex) return;
          if (this.#state === DONE) {
            if (off < len) this.#keepAlive = false;
            ex.upstreamBody(undefined, true);
            return this.#finish();
          }
          break;
        }
        case FIXED:
        case CHUNK_DATA: {
          const n = Math.min(this.#remaining, len - off);
          const piece = Buffer.copyBytesFrom(buf, off, n);
          off += n;
          this.#remaining -= n;
          if (this.#remaining === 0 && this.#state === FIXED) {
            this.#state = DONE;
            if (off < len) this.#keepAlive = false;
            ex.upstreamBody(piece, true);
            return this.#finish();
          }
          if (this.#remaining === 0) this.#state = CHUNK_DATA_CR;
          ex.upstreamBody(piece, false);
          if (this.#ex !== ex) return;
          break;
        }
        case UNTIL_CLOSE:
          ex.upstreamBody(Buffer.copyBytesFrom(buf, off), false);
          return;
        case CHUNK_SIZE: {
          const c = buf[off++]!;
          const d = hexValue(c);
          if (d >= 0) {
            if (++this.#sizeDigits > 12) return this.#broken("HPE_INVALID_CHUNK_SIZE");
            this.#remaining = this.#remaining * 16 + d;
          } else if (this.#sizeDigits === 0) return this.#broken("HPE_INVALID_CHUNK_SIZE");
          else if (c === CR) this.#state = CHUNK_SIZE_LF;
          else if (c === 0x3b || c === 0x20 || c === 0x09) this.#state = CHUNK_EXT;
          else return this.#broken("HPE_INVALID_CHUNK_SIZE");
          break;
        }
        case CHUNK_EXT: {
          const cr = buf.indexOf(CR, off);
          const upto = cr < 0 ? len : cr;
          this.#skipped += upto - off;
          if (this.#skipped > MAX_SKIPPED_BYTES) return this.#broken("HPE_CHUNK_EXTENSIONS_OVERFLOW");
          off = cr < 0 ? len : cr + 1;
          if (cr >= 0) this.#state = CHUNK_SIZE_LF;
          break;
        }
        case CHUNK_SIZE_LF:
          if (buf[off++] !== LF) return this.#broken("HPE_INVALID_CHUNK_SIZE");
          this.#sizeDigits = 0;
          if (this.#remaining === 0) {
            this.#state = TRAILERS;
            this.#lineLen = 0;
          } else this.#state = CHUNK_DATA;
          break;
        case CHUNK_DATA_CR:
          if (buf[off++] !== CR) return this.#broken("HPE_STRICT");
          this.#state = CHUNK_DATA_LF;
          break;
        case CHUNK_DATA_LF:
          if (buf[off++] !== LF) return this.#broken("HPE_STRICT");
          this.#state = CHUNK_SIZE;
          break;
        case TRAILERS: {
          // Trailer fields are read and dropped (node's server would have to be told to send them).
          const c = buf[off++]!;
          if (c === LF) {
            if (this.#lineLen === 0) {
              this.#state = DONE;
              if (off < len) this.#keepAlive = false;
              ex.upstreamBody(undefined, true);
              return this.#finish();
            }
            this.#lineLen = 0;
          } else if (c !== CR) {
            this.#lineLen++;
            if (++this.#skipped > MAX_SKIPPED_BYTES) return this.#broken("HPE_HEADER_OVERFLOW");
          }
          break;
        }
        default:
          return;
      }
    }
  }

  /** Parse a response head (without the blank line); returns an error code or undefined. */
  #head(text: string, ex: UpstreamExchange): string | undefined {
    const eol = text.indexOf("\r\n");
    const statusEnd = eol < 0 ? text.length : eol;
    // "HTTP/1.x NNN[ reason]"
    if (statusEnd < 12 || !text.startsWith("HTTP/1.") || text.charCodeAt(8) !== 32) return "HPE_INVALID_CONSTANT";
    const minor = text.charCodeAt(7) - 48;
    if (minor !== 0 && minor !== 1) return "HPE_INVALID_VERSION";
    const s1 = text.charCodeAt(9) - 48;
    const s2 = text.charCodeAt(10) - 48;
    const s3 = text.charCodeAt(11) - 48;
    if (s1 < 1 || s1 > 9 || s2 < 0 || s2 > 9 || s3 < 0 || s3 > 9 || (statusEnd > 12 && text.charCodeAt(12) !== 32)) return "HPE_INVALID_STATUS";
    const status = s1 * 100 + s2 * 10 + s3;

    const raw: string[] = [];
    let keepAlive = minor === 1;
    let contentLength = -1;
    let transferEncoding = false;
    let chunked = false;
    let keepFor = Infinity;
    let pos = eol < 0 ? text.length : eol + 2;
    while (pos < text.length) {
      let e = text.indexOf("\r\n", pos);
      if (e < 0) e = text.length;
      const colon = text.indexOf(":", pos);
      if (colon <= pos || colon >= e) return "HPE_INVALID_HEADER_TOKEN";
      const name = text.slice(pos, colon);
      // Also refuses obs-fold: a continuation line starts with a space, not a token.
      if (!TOKEN.test(name)) return "HPE_INVALID_HEADER_TOKEN";
      const value = trimOws(text.slice(colon + 1, e));
      if (BAD_VALUE.test(value)) return "HPE_INVALID_HEADER_TOKEN";
      raw.push(name, value);
      pos = e + 2;
      const n = name.length;
      if (n !== 10 && n !== 14 && n !== 17) continue;
      const lower = name.toLowerCase();
      if (lower === "content-length") {
        if (!DIGITS.test(value)) return "HPE_INVALID_CONTENT_LENGTH";
        const v = Number(value);
        if (contentLength >= 0 && contentLength !== v) return "HPE_UNEXPECTED_CONTENT_LENGTH";
        contentLength = v;
      } else if (lower === "transfer-encoding") {
        transferEncoding = true;
        const comma = value.lastIndexOf(",");
        chunked = trimOws(comma < 0 ? value : value.slice(comma + 1)).toLowerCase() === "chunked";
      } else if (lower === "connection") {
        if (value === "keep-alive") keepAlive ||= minor === 0;
        else {
          for (const t of value.split(",")) {
            const tok = trimOws(t).toLowerCase();
            if (tok === "close") keepAlive = false;
            else if (tok === "keep-alive" && minor === 0) keepAlive = true;
          }
        }
      } else if (lower === "keep-alive") keepFor = keepAliveFor(value);
    }
    if (status < 200) {
      // 1xx: interim (100 Continue, 103 Early Hints); the final response follows.
      // A 101 was never asked for here: upgrades do not go through the pool.
      return status === 101 ? "HPE_INVALID_STATUS" : undefined;
    }
    if (transferEncoding && contentLength >= 0) return "HPE_UNEXPECTED_CONTENT_LENGTH";
    this.#keepAlive = keepAlive;
    this.#keepFor = keepFor;
    this.#remaining = 0;
    this.#sizeDigits = 0;
    this.#skipped = 0;
    if (this.#noBody || status === 204 || status === 304) this.#state = DONE;
    else if (transferEncoding) {
      this.#state = chunked ? CHUNK_SIZE : UNTIL_CLOSE;
      if (!chunked) this.#keepAlive = false;
    } else if (contentLength >= 0) {
      this.#state = contentLength === 0 ? DONE : FIXED;
      this.#remaining = contentLength;
    } else {
      this.#state = UNTIL_CLOSE;
      this.#keepAlive = false;
    }
    ex.upstreamHead(status, raw);
    return undefined;
  }
}
