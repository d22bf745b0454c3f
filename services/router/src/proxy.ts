import http, { STATUS_CODES } from "node:http";
import type { ClientRequest, IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Clock, Logger, TimerHandle } from "@berth/core";
import { ActivationError, type Activator } from "./activator.ts";
import { formatAccessLog, type AccessLogEntry } from "./accesslog.ts";
import { instanceKey, type Balancer } from "./balancer.ts";
import { CODES, errorPage, wantsJson, type RouterCode } from "./codes.ts";
import { clientAddress, downstreamHeaders, forwardedFor, rawHeaderBlock, requestHead, requestIdFrom, upstreamHeaders, type ForwardContext } from "./headers.ts";
import type { AppSeries, RouterMetrics } from "./metrics.ts";
import { normalizeHost, type AppRoute, type InstanceRoute, type RouteTable } from "./routes.ts";
import type { UpstreamConn, UpstreamExchange, UpstreamPool } from "./upstream.ts";

/** Who wants to know how many requests each app has in flight (the autoscaler). */
export interface LoadObserver {
  requestStarted(appId: string): void;
  requestEnded(appId: string): void;
}

export interface ProxyLimits {
  /** Request body bytes beyond which the request fails with 413; 0 = unlimited. */
  maxBodyBytes: number;
  /** Time to open a TCP connection to an instance before trying another (H19). */
  connectTimeoutMs: number;
  /** Once a response (or websocket) is flowing, the longest silence tolerated (H15). */
  idleTimeoutMs: number;
}

export interface ProxyDeps {
  table: RouteTable;
  balancer: Balancer;
  activator: Activator;
  load: LoadObserver;
  metrics: RouterMetrics;
  clock: Clock;
  logger: Logger;
  /** Keep-alive connections to instances (plain requests; upgrades get their own). */
  upstream: UpstreamPool;
  baseDomain: string;
  proto: "http" | "https";
  limits: ProxyLimits;
  /** Requests whose Host is this go to `admin` instead of an app. */
  adminHost?: string;
  admin: (req: IncomingMessage, res: http.ServerResponse) => void;
  onAccessLog?: (line: string, entry: AccessLogEntry) => void;
}

/** What a response tells the exchange it belongs to. */
interface ResponseOwner {
  responseClosed(): void;
  responseDrained(): void;
}

/**
 * The server's response class (createServer's ServerResponse option): it carries its
 * exchange, so the per-request listeners are shared functions, not closures.
 */
export class RouterResponse<Request extends IncomingMessage = IncomingMessage> extends http.ServerResponse<Request> {
  owner: ResponseOwner | undefined = undefined;
}

function onResponseClose(this: RouterResponse): void {
  this.owner?.responseClosed();
}

function onResponseDrain(this: RouterResponse): void {
  this.owner?.responseDrained();
}

/** Bodies up to this size are handed to node with the head as one string (see upstreamBody). */
const SMALL_BODY_BYTES = 4096;

function errCode(err: unknown): string {
  return (err as (Error & { code?: string }) | undefined)?.code ?? "";
}

/**
 * Per-request bookkeeping shared by plain requests and upgrades (access line, metrics,
 * in-flight accounting), and the dispatch loop: wait for a ready instance (activator),
 * pick one, try it; on connect failure try the others.
 */
abstract class Exchange {
  readonly d: ProxyDeps;
  readonly req: IncomingMessage;
  readonly startMs: number;
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  /** Origin-form target sent upstream; "" when the request line could not be parsed. */
  readonly target: string;
  readonly host: string;
  readonly fwd: string;
  readonly port: number;
  route: AppRoute | undefined = undefined;
  series: AppSeries | undefined = undefined;
  tracked = false;
  dyno = "";
  connectMs = 0;
  serviceStart = -1;
  serviceEnd = -1;
  status = 0;
  bytes = 0;
  code: RouterCode | undefined = undefined;
  logged = false;
  skipLog = false;
  /** The client went away: nothing more to send. */
  gone = false;
  /** Set while the activator holds the request (cold path only). */
  hold: AbortController | undefined = undefined;
  failure: RouterCode = "H10";
  staleRetry = false;
  tried: Set<string> | undefined = undefined;
  // The current attempt against one instance.
  key = "";
  active = false;
  connected = false;
  responded = false;
  attemptStart = 0;
  timer: TimerHandle | undefined = undefined;
  #onTimer: (() => void) | undefined = undefined;

  constructor(d: ProxyDeps, req: IncomingMessage) {
    this.d = d;
    this.req = req;
    const url = req.url ?? "/";
    let target = url;
    let host = normalizeHost(req.headers.host);
    if (url.charCodeAt(0) !== 47 /* / */ && url !== "*") {
      // absolute-form (RFC 9112 §3.2.2): its authority wins over Host.
      try {
        const u = new URL(url);
        target = u.pathname + u.search;
        host = normalizeHost(u.host);
      } catch {
        target = "";
      }
    }
    this.startMs = d.clock.now();
    this.requestId = requestIdFrom(req.headers["x-request-id"]);
    this.method = req.method ?? "GET";
    this.path = url;
    this.target = target;
    this.host = host;
    const prior = req.headers["x-forwarded-for"];
    this.fwd = forwardedFor(Array.isArray(prior) ? prior.join(", ") : prior, clientAddress(req));
    this.port = req.socket.localPort ?? 0;
  }

  /** Try `inst`; the attempt ends in settle() and then retry(), fail() or a finished exchange. */
  abstract attempt(route: AppRoute, inst: InstanceRoute): void;
  /** Answer with the router's own page for `code` (or cut the connection). */
  abstract fail(code: RouterCode): void;
  /** Give up the current attempt's connection. */
  abstract abandon(): void;
  /** The attempt timed out: connecting (H19, retried) or waiting for the head (H12). */
  abstract timedOut(): void;

  /** Route checks shared by plain requests and upgrades; returns the failure to answer, if any. */
  admit(): RouterCode | undefined {
    if (!this.target) return "BAD_REQUEST";
    const route = lookup(this.d, this.host);
    if (!route) return "NO_APP";
    this.route = route;
    if (route.maintenance) return "H80";
    // max 0: the owner scaled web to zero (`ps:scale web=0`): the app is off, not asleep; never wake it.
    if (route.scale.max === 0) return "H14";
    const max = this.d.limits.maxBodyBytes;
    const len = this.req.headers["content-length"];
    if (max > 0 && len !== undefined && Number(len) > max) return "H25";
    this.tracked = true;
    this.d.load.requestStarted(route.appId);
    this.series = this.d.metrics.app(route.appId, route.appName);
    this.series.started();
    return undefined;
  }

  dispatch(): void {
    if (this.gone) return this.fail("H27");
    const { activator, table, balancer } = this.d;
    const appId = this.route!.appId;
    if (!activator.isReady(appId)) return this.#wait(appId);
    const current = table.get(appId);
    if (!current) return this.fail("NO_APP");
    this.route = current;
    const inst = balancer.pick(appId, table.readyInstances(appId), this.tried);
    if (!inst) return this.fail(this.failure);
    this.key = instanceKey(inst);
    this.dyno = inst.name;
    this.active = true;
    this.connected = false;
    this.responded = false;
    this.attemptStart = this.d.clock.now();
    balancer.start(this.key);
    this.attempt(current, inst);
  }

  /** The attempt failed without reaching the app (or on a stale keep-alive socket): try again. */
  retry(code: RouterCode, sameAgain: boolean): void {
    if (this.gone) return this.fail("H27");
    this.failure = code;
    // A keep-alive socket the app had already closed: the request never reached it.
    if (sameAgain && !this.staleRetry) this.staleRetry = true;
    else (this.tried ??= new Set()).add(this.key);
    this.dispatch();
  }

  /** Hold until the app has a ready instance (cold path: the only place with an AbortController). */
  #wait(appId: string): void {
    const hold = new AbortController();
    this.hold = hold;
    this.d.activator
      .wait(appId, hold.signal)
      .then(
        () => {
          this.hold = undefined;
          this.dispatch();
        },
        (err: unknown) => {
          this.hold = undefined;
          if (err instanceof ActivationError) return this.fail(err.code);
          throw err;
        },
      )
      .catch((err: unknown) => this.crashed(err));
  }

  /** A bug in the router, not a failure of the app: log it, answer H99, never take the process down. */
  crashed(err: unknown): void {
    this.d.logger.error("router failure", { requestId: this.requestId, err });
    try {
      this.abandon();
      this.settle();
      this.fail("H99");
    } catch (again) {
      this.d.logger.error("router failure while failing", { requestId: this.requestId, err: again });
    }
  }

  /** Start the attempt's single timer (or move it to a new deadline). */
  arm(ms: number): void {
    const clock = this.d.clock;
    if (this.timer) clock.clearTimeout(this.timer);
    this.#onTimer ??= () => {
      this.timer = undefined;
      if (this.active) this.timedOut();
    };
    this.timer = clock.setTimeout(this.#onTimer, ms);
  }

  /** The attempt is over: its timer and its count against the instance go. */
  settle(): void {
    if (!this.active) return;
    this.active = false;
    if (this.timer) {
      this.d.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.d.balancer.finish(this.key);
  }

  /** The client side closed (finished or not). */
  clientClosed(): void {
    this.gone = true;
    this.hold?.abort();
    if (this.active) {
      if (!this.responded) this.code ??= "H27";
      this.abandon();
      this.settle();
    }
  }

  /** Exactly once per request: in-flight accounting, metrics, access line. */
  end(status: number, finished: boolean): void {
    if (this.logged) return;
    this.logged = true;
    const d = this.d;
    const now = d.clock.now();
    if (!finished && this.code === undefined) this.code = status ? "H18" : "H27";
    const code = this.code;
    if (!status) status = code ? (code === "H27" ? 499 : CODES[code].status) : 499;
    const route = this.route;
    if (this.tracked && route) {
      d.load.requestEnded(route.appId);
      this.series!.ended();
    }
    if (this.skipLog) return;
    const hcode = code !== undefined && code.charCodeAt(0) === 72 /* H */ ? code : undefined;
    if (route) d.metrics.app(route.appId, route.appName).observe(status, (now - this.startMs) / 1000, hcode);
    else d.metrics.unroutedRequest();
    const sink = d.onAccessLog;
    if (!sink) return;
    const entry: AccessLogEntry = {
      at: hcode ? CODES[hcode].level : "info",
      method: this.method,
      path: this.path,
      host: this.host,
      requestId: this.requestId,
      fwd: this.fwd,
      dyno: this.dyno,
      connectMs: this.connectMs,
      serviceMs: this.serviceStart < 0 ? 0 : (this.serviceEnd < 0 ? now : this.serviceEnd) - this.serviceStart,
      status,
      bytes: this.bytes,
      protocol: d.proto,
    };
    if (hcode) {
      entry.code = hcode;
      entry.desc = CODES[hcode].desc;
    }
    if (route) {
      entry.appId = route.appId;
      entry.appName = route.appName;
    }
    try {
      sink(formatAccessLog(entry), entry);
    } catch (err) {
      d.logger.warn("access log callback failed", { err });
    }
  }

  forwardContext(upgrade: boolean): ForwardContext {
    return { requestId: this.requestId, startMs: this.startMs, proto: this.d.proto, port: this.port, forwardedFor: this.fwd, host: this.host, upgrade };
  }
}

function lookup(d: ProxyDeps, host: string): AppRoute | undefined {
  const direct = d.table.byHostKey(host);
  if (direct) return direct;
  const base = d.baseDomain;
  // <name>.<baseDomain>, one label only
  if (base && host.length > base.length + 1 && host.endsWith(base) && host.charCodeAt(host.length - base.length - 1) === 46 /* . */) {
    const name = host.slice(0, host.length - base.length - 1);
    if (!name.includes(".")) return d.table.byName(name);
  }
  return undefined;
}

/**
 * A plain request: forwarded over a pooled keep-alive connection, the response streamed
 * back with backpressure. Its upstream events arrive as UpstreamExchange calls.
 */
class HttpExchange extends Exchange implements UpstreamExchange, ResponseOwner {
  readonly res: RouterResponse;
  conn: UpstreamConn | undefined = undefined;
  bodyBytes = 0;
  pump: BodyPump | undefined = undefined;
  #drainHooked = false;

  constructor(d: ProxyDeps, req: IncomingMessage, res: RouterResponse) {
    super(d, req);
    this.res = res;
  }

  serve(): void {
    const d = this.d;
    if (d.adminHost && this.host === d.adminHost) {
      this.skipLog = true;
      d.admin(this.req, this.res);
      return;
    }
    const failed = this.admit();
    if (failed) return this.fail(failed);
    this.dispatch();
  }

  attempt(_route: AppRoute, inst: InstanceRoute): void {
    this.bodyBytes = 0;
    const conn = this.d.upstream.acquire(this.key, inst.host, inst.port, this);
    if (conn) this.#ready(conn, this.attemptStart);
    else if (this.active) this.arm(this.d.limits.connectTimeoutMs);
  }

  upstreamReady(conn: UpstreamConn): void {
    if (!this.active) return conn.abandon();
    this.#ready(conn, this.d.clock.now());
  }

  /** A connection for the attempt: write the request. A pooled one comes at once (`now` is the attempt's start). */
  #ready(conn: UpstreamConn, now: number): void {
    this.conn = conn;
    this.connected = true;
    this.connectMs = now - this.attemptStart;
    this.serviceStart = now;
    this.arm(this.route!.timeoutMs);
    const req = this.req;
    const length = req.headers["content-length"];
    const hasBody = length !== undefined || req.headers["transfer-encoding"] !== undefined;
    const chunked = hasBody && length === undefined;
    const head = requestHead(this.method, this.target, upstreamHeaders(req.rawHeaders, this.forwardContext(false)), chunked);
    conn.send(head, { noBody: this.method === "HEAD", chunked, hasBody });
    if (hasBody) this.pump = new BodyPump(this, req, conn);
  }

  upstreamConnectFailed(code: string): void {
    if (!this.active) return;
    this.d.logger.warn("backend connect failed", { requestId: this.requestId, dyno: this.dyno, code });
    this.settle();
    this.retry("H10", false);
  }

  upstreamHead(status: number, raw: string[]): void {
    if (!this.active) return;
    this.responded = true;
    if (this.timer) {
      this.d.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    try {
      this.res.writeHead(status, downstreamHeaders(raw));
    } catch (err) {
      this.d.logger.warn("unusable backend response", { requestId: this.requestId, status, err });
      this.abandon();
      this.settle();
      this.fail("H17");
    }
  }

  upstreamBody(chunk: Buffer | undefined, done: boolean): void {
    if (!this.active) return;
    const res = this.res;
    if (chunk) this.bytes += chunk.length;
    if (done) {
      // The connection goes back to the pool by itself.
      this.serviceEnd = this.d.clock.now();
      this.conn = undefined;
      this.pump?.stop();
      this.pump = undefined;
      this.settle();
      // A small last piece goes out in one buffer with the head (node joins a string to
      // it; a Buffer would be a second one in a writev). latin1 maps bytes 1:1.
      if (!chunk) res.end();
      else if (chunk.length <= SMALL_BODY_BYTES && !res.headersSent) res.end(chunk.toString("latin1"), "latin1");
      else res.end(chunk);
      return;
    }
    if (!res.write(chunk!)) {
      this.conn?.pause();
      if (!this.#drainHooked) {
        this.#drainHooked = true;
        res.on("drain", onResponseDrain);
      }
    }
  }

  upstreamFailed(code: string): void {
    if (!this.active) return;
    const conn = this.conn;
    this.conn = undefined;
    this.pump?.stop();
    this.pump = undefined;
    if (!this.responded) {
      this.settle();
      if (conn?.reused && !conn.responseStarted && this.bodyBytes === 0 && (code === "ECONNRESET" || code === "EPIPE")) return this.retry("H13", true);
      return this.fail(code.startsWith("HPE_") ? "H17" : "H13");
    }
    // The app died mid-response: the status is out, so the client must see a broken stream.
    this.code ??= "H18";
    this.serviceEnd = this.d.clock.now();
    this.settle();
    this.res.destroy();
  }

  upstreamIdle(): void {
    if (!this.active) return;
    this.code ??= "H15";
    this.abandon();
    this.settle();
    this.res.destroy();
  }

  upstreamDrain(): void {
    this.pump?.resume();
  }

  responseDrained(): void {
    this.conn?.resume();
  }

  responseClosed(): void {
    const res = this.res;
    res.owner = undefined;
    this.end(res.headersSent ? res.statusCode : 0, res.writableFinished);
    this.clientClosed();
  }

  timedOut(): void {
    if (!this.connected) {
      this.d.upstream.cancel(this.key, this);
      this.d.logger.warn("backend connect failed", { requestId: this.requestId, dyno: this.dyno, code: "BERTH_CONNECT_TIMEOUT" });
      this.settle();
      return this.retry("H19", false);
    }
    if (this.responded) return;
    this.abandon();
    this.settle();
    this.fail("H12");
  }

  abandon(): void {
    this.pump?.stop();
    this.pump = undefined;
    if (this.conn) {
      this.conn.abandon();
      this.conn = undefined;
    } else if (this.active && !this.connected) this.d.upstream.cancel(this.key, this);
  }

  /** The request body passed maxBodyBytes while streaming. */
  tooLarge(): void {
    this.abandon();
    this.settle();
    this.fail("H25");
  }

  fail(code: RouterCode): void {
    this.code = code;
    const { req, res } = this;
    if (res.headersSent || res.destroyed || res.writableEnded) {
      res.destroy();
      return;
    }
    const page = errorPage(code, this.requestId, wantsJson(req.headers.accept));
    const body = Buffer.from(page.body);
    this.bytes = body.length;
    const headers = ["content-type", page.contentType, "content-length", String(body.length), "cache-control", "no-store", "x-request-id", this.requestId, "via", "1.1 berth"];
    // An unread body would otherwise be parsed as the next request on this connection.
    if (!req.complete && !req.readableEnded) headers.push("connection", "close");
    res.writeHead(page.status, headers);
    res.end(body);
  }
}

/**
 * Streams a request body into the upstream connection with backpressure, counting it
 * against maxBodyBytes. Only requests that have a body get one.
 */
class BodyPump {
  readonly #ex: HttpExchange;
  readonly #req: IncomingMessage;
  readonly #conn: UpstreamConn;
  readonly #max: number;
  #stopped = false;
  readonly #onData = (chunk: Buffer) => {
    const ex = this.#ex;
    ex.bodyBytes += chunk.length;
    if (this.#max > 0 && ex.bodyBytes > this.#max) return ex.tooLarge();
    if (!this.#conn.writeBody(chunk)) this.#req.pause();
  };
  readonly #onEnd = () => {
    if (!this.#stopped) this.#conn.endBody();
  };

  constructor(ex: HttpExchange, req: IncomingMessage, conn: UpstreamConn) {
    this.#ex = ex;
    this.#req = req;
    this.#conn = conn;
    this.#max = ex.d.limits.maxBodyBytes;
    if (req.readableEnded) {
      conn.endBody();
      return;
    }
    req.on("data", this.#onData);
    req.once("end", this.#onEnd);
    req.resume();
  }

  resume(): void {
    if (!this.#stopped) this.#req.resume();
  }

  /** Stop reading; what is left stays unread (the router answers with Connection: close). */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#req.off("data", this.#onData);
    this.#req.off("end", this.#onEnd);
    if (!this.#req.readableEnded) this.#req.pause();
  }
}

/**
 * A protocol switch (websockets): a fresh connection per upgrade through node's client,
 * since an upgraded socket never returns to a pool; then bytes piped both ways.
 */
class UpgradeExchange extends Exchange {
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly #upgraded: Set<Duplex>;
  preq: ClientRequest | undefined = undefined;

  constructor(d: ProxyDeps, req: IncomingMessage, socket: Duplex, head: Buffer, upgraded: Set<Duplex>) {
    super(d, req);
    this.socket = socket;
    this.head = head;
    this.#upgraded = upgraded;
  }

  serve(): void {
    const socket = this.socket;
    socket.on("error", () => socket.destroy());
    this.#upgraded.add(socket);
    socket.once("close", () => {
      this.#upgraded.delete(socket);
      this.end(this.status, this.status === 101 || this.code === undefined);
      this.clientClosed();
    });
    const failed = this.admit();
    if (failed) return this.fail(failed);
    this.dispatch();
  }

  abandon(): void {
    this.preq?.destroy();
    this.preq = undefined;
  }

  timedOut(): void {
    if (this.responded) return;
    if (!this.connected) {
      this.abandon();
      this.settle();
      return this.retry("H19", false);
    }
    this.abandon();
    this.settle();
    this.fail("H12");
  }

  attempt(route: AppRoute, inst: InstanceRoute): void {
    const d = this.d;
    const { clock, limits } = d;
    const { req, socket, head } = this;
    let preq: ClientRequest;
    try {
      // A fresh connection: an upgraded socket never goes back to a keep-alive pool.
      preq = http.request({ host: inst.host, port: inst.port, method: req.method, path: this.target, agent: false, headers: upstreamHeaders(req.rawHeaders, this.forwardContext(true)) });
    } catch (err) {
      d.logger.warn("upgrade rejected by http client", { requestId: this.requestId, err });
      this.settle();
      return this.fail("BAD_REQUEST");
    }
    this.preq = preq;
    this.arm(limits.connectTimeoutMs);
    preq.on("socket", (sock: Socket) => {
      const onConnect = () => {
        if (!this.active || this.preq !== preq) return;
        this.connected = true;
        this.connectMs = clock.now() - this.attemptStart;
        this.serviceStart = clock.now();
        this.arm(route.timeoutMs);
      };
      if (sock.connecting) sock.once("connect", onConnect);
      else onConnect();
    });

    preq.on("upgrade", (pres: IncomingMessage, psock: Socket, phead: Buffer) => {
      psock.on("error", () => psock.destroy());
      if (!this.active || this.preq !== preq || socket.destroyed) {
        psock.destroy();
        return;
      }
      this.responded = true;
      if (this.timer) {
        clock.clearTimeout(this.timer);
        this.timer = undefined;
      }
      this.status = pres.statusCode ?? 101;
      socket.write(rawHeaderBlock(this.status, "Switching Protocols", downstreamHeaders(pres.rawHeaders, { upgrade: true })));
      if (phead.length) socket.write(phead);
      if (head.length) psock.write(head);
      psock.on("data", (c: Buffer) => {
        this.bytes += c.length;
      });
      // The instance stays "outstanding" for the balancer while the websocket is open.
      const closeBoth = () => {
        if (this.serviceEnd < 0) this.serviceEnd = clock.now();
        psock.destroy();
        socket.destroy();
        this.settle();
      };
      const idle = () => {
        this.code ??= "H15";
        closeBoth();
      };
      psock.setTimeout(limits.idleTimeoutMs, idle);
      if ("setTimeout" in socket && typeof socket.setTimeout === "function") (socket as Socket).setTimeout(limits.idleTimeoutMs, idle);
      psock.once("close", closeBoth);
      socket.once("close", closeBoth);
      // A websocket has no use for half-closed TCP: when either side is done sending,
      // flush what is in flight to the other and close both.
      psock.once("end", () => socket.end(closeBoth));
      socket.once("end", () => psock.end(closeBoth));
      psock.pipe(socket, { end: false });
      socket.pipe(psock, { end: false });
    });

    preq.on("response", (pres: IncomingMessage) => {
      // The app declined the protocol switch: relay its answer and close.
      if (!this.active || this.preq !== preq) {
        pres.destroy();
        return;
      }
      this.responded = true;
      if (this.timer) {
        clock.clearTimeout(this.timer);
        this.timer = undefined;
      }
      pres.on("error", () => socket.destroy());
      this.status = pres.statusCode ?? 502;
      const headers = downstreamHeaders(pres.rawHeaders);
      for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i]!.toLowerCase() === "content-length") headers.splice(i, 2);
      headers.push("connection", "close");
      socket.write(rawHeaderBlock(this.status, STATUS_CODES[this.status] ?? "Unknown", headers));
      pres.on("data", (c: Buffer) => {
        this.bytes += c.length;
      });
      pres.pipe(socket);
      pres.once("end", () => this.settle());
      pres.once("close", () => {
        if (!pres.complete) socket.destroy();
        this.settle();
      });
    });

    preq.on("error", (err: Error) => {
      if (!this.active || this.preq !== preq) return;
      const code = errCode(err);
      this.preq = undefined;
      this.settle();
      if (!this.connected) return this.retry("H10", false);
      if (!this.responded) this.fail(code.startsWith("HPE_") ? "H17" : "H13");
      else socket.destroy();
    });
    preq.end();
  }

  fail(code: RouterCode): void {
    this.code = code;
    const socket = this.socket;
    if (socket.destroyed || !socket.writable || this.status === 101) {
      socket.destroy();
      return;
    }
    const page = errorPage(code, this.requestId, wantsJson(this.req.headers.accept));
    const body = Buffer.from(page.body);
    this.status = page.status;
    this.bytes = body.length;
    const head = rawHeaderBlock(page.status, STATUS_CODES[page.status] ?? "Error", [
      "content-type", page.contentType,
      "content-length", String(body.length),
      "cache-control", "no-store",
      "x-request-id", this.requestId,
      "via", "1.1 berth",
      "connection", "close",
    ]);
    socket.end(Buffer.concat([Buffer.from(head, "latin1"), body]));
  }
}

/**
 * The forwarding half of the router: one instance per host-header request, with
 * least-outstanding balancing, retries on connect failure, Heroku's headers and error
 * codes, and websockets. Never throws into node's server: every failure becomes a
 * response, a closed socket, and an access line.
 */
export class HttpProxy {
  readonly #d: ProxyDeps;
  /** Sockets handed over by `upgrade`; the server no longer tracks them, so close() does. */
  readonly upgraded = new Set<Duplex>();

  constructor(deps: ProxyDeps) {
    this.#d = deps;
  }

  lookup(host: string): AppRoute | undefined {
    return lookup(this.#d, normalizeHost(host));
  }

  /** node's "request" listener; `res` is a RouterResponse (see createServer's options in server.ts). */
  handleRequest = (req: IncomingMessage, res: RouterResponse): void => {
    const ex = new HttpExchange(this.#d, req, res);
    res.owner = ex;
    res.on("close", onResponseClose);
    try {
      ex.serve();
    } catch (err) {
      ex.crashed(err);
    }
  };

  /** node's "upgrade" listener (websockets and any other protocol switch). */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const ex = new UpgradeExchange(this.#d, req, socket, head, this.upgraded);
    try {
      ex.serve();
    } catch (err) {
      ex.crashed(err);
    }
  };
}
