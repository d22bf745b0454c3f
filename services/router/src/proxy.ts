import http, { STATUS_CODES } from "node:http";
import type { Agent, ClientRequest, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Clock, Logger, TimerHandle } from "@berth/core";
import { ActivationError, type Activator } from "./activator.ts";
import { formatAccessLog, type AccessLogEntry } from "./accesslog.ts";
import { instanceKey, type Balancer } from "./balancer.ts";
import { CODES, errorPage, wantsJson, type RouterCode } from "./codes.ts";
import { downstreamHeaders, forwardedFor, rawHeaderBlock, requestIdFrom, upstreamHeaders } from "./headers.ts";
import type { RouterMetrics } from "./metrics.ts";
import { normalizeHost, type AppRoute, type InstanceRoute, type RouteTable } from "./routes.ts";

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
  agent: Agent;
  baseDomain: string;
  proto: "http" | "https";
  limits: ProxyLimits;
  /** Requests whose Host is this go to `admin` instead of an app. */
  adminHost?: string;
  admin: (req: IncomingMessage, res: ServerResponse) => void;
  onAccessLog?: (line: string, entry: AccessLogEntry) => void;
}

/** Per-request bookkeeping that ends up in the access line and metrics. */
interface Exchange {
  startMs: number;
  requestId: string;
  method: string;
  path: string;
  /** Origin-form target sent upstream. */
  target: string;
  host: string;
  fwd: string;
  port: number;
  route: AppRoute | undefined;
  tracked: boolean;
  dyno: string;
  connectMs: number;
  serviceStart: number | undefined;
  serviceEnd: number | undefined;
  status: number;
  bytes: number;
  code: RouterCode | undefined;
  logged: boolean;
  skipLog: boolean;
}

type Outcome = { kind: "done" } | { kind: "retry"; code: RouterCode; sameAgain?: boolean };

type ConnectError = Error & { code?: string };

function errCode(err: unknown): string {
  return (err as ConnectError | undefined)?.code ?? "";
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
    const { table, baseDomain } = this.#d;
    const direct = table.byHost(host);
    if (direct) return direct;
    const suffix = `.${baseDomain}`;
    if (baseDomain && host.endsWith(suffix)) {
      const name = host.slice(0, -suffix.length);
      if (name && !name.includes(".")) return table.byName(name);
    }
    return undefined;
  }

  /** node's "request" listener. */
  handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const ex = this.#begin(req);
    res.once("close", () => this.#end(ex, res.headersSent ? res.statusCode : 0, res.writableFinished));
    this.#serve(req, res, ex).catch((err: unknown) => {
      this.#d.logger.error("router failure", { requestId: ex.requestId, err });
      this.#fail(req, res, ex, "H99");
    });
  };

  /** node's "upgrade" listener (websockets and any other protocol switch). */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => socket.destroy());
    this.upgraded.add(socket);
    const ex = this.#begin(req);
    socket.once("close", () => {
      this.upgraded.delete(socket);
      this.#end(ex, ex.status, ex.status === 101 || ex.code === undefined);
    });
    this.#serveUpgrade(req, socket, head, ex).catch((err: unknown) => {
      this.#d.logger.error("router failure", { requestId: ex.requestId, err });
      this.#failRaw(req, socket, ex, "H99");
    });
  };

  #begin(req: IncomingMessage): Exchange {
    const url = req.url ?? "/";
    let target = url;
    let host = normalizeHost(req.headers.host);
    if (!url.startsWith("/") && url !== "*") {
      // absolute-form (RFC 9112 §3.2.2): its authority wins over Host.
      try {
        const u = new URL(url);
        target = u.pathname + u.search;
        host = normalizeHost(u.host);
      } catch {
        target = "";
      }
    }
    return {
      startMs: this.#d.clock.now(),
      requestId: requestIdFrom(req.headers["x-request-id"]),
      method: req.method ?? "GET",
      path: url,
      target,
      host,
      fwd: forwardedFor(req),
      port: req.socket.localPort ?? 0,
      route: undefined,
      tracked: false,
      dyno: "",
      connectMs: 0,
      serviceStart: undefined,
      serviceEnd: undefined,
      status: 0,
      bytes: 0,
      code: undefined,
      logged: false,
      skipLog: false,
    };
  }

  /** Exactly once per request: in-flight accounting, metrics, access line. */
  #end(ex: Exchange, status: number, finished: boolean): void {
    if (ex.logged) return;
    ex.logged = true;
    const now = this.#d.clock.now();
    if (!finished && ex.code === undefined) ex.code = status ? "H18" : "H27";
    if (!status) status = ex.code ? (ex.code === "H27" ? 499 : CODES[ex.code].status) : 499;
    const route = ex.route;
    if (ex.tracked && route) {
      this.#d.load.requestEnded(route.appId);
      this.#d.metrics.requestEnded(route.appId);
    }
    if (ex.skipLog) return;
    if (route) this.#d.metrics.observe(route.appId, route.appName, status, (now - ex.startMs) / 1000, ex.code?.startsWith("H") ? ex.code : undefined);
    else this.#d.metrics.unroutedRequest();
    if (!this.#d.onAccessLog) return;
    const info = ex.code ? CODES[ex.code] : undefined;
    const hcode = ex.code?.startsWith("H") ? ex.code : undefined;
    const entry: AccessLogEntry = {
      at: hcode ? info!.level : "info",
      ...(hcode ? { code: hcode, desc: info!.desc } : {}),
      ...(route ? { appId: route.appId, appName: route.appName } : {}),
      method: ex.method,
      path: ex.path,
      host: ex.host,
      requestId: ex.requestId,
      fwd: ex.fwd,
      dyno: ex.dyno,
      connectMs: ex.connectMs,
      serviceMs: ex.serviceStart === undefined ? 0 : (ex.serviceEnd ?? now) - ex.serviceStart,
      status,
      bytes: ex.bytes,
      protocol: this.#d.proto,
    };
    try {
      this.#d.onAccessLog(formatAccessLog(entry), entry);
    } catch (err) {
      this.#d.logger.warn("access log callback failed", { err });
    }
  }

  #track(ex: Exchange, route: AppRoute): void {
    ex.route = route;
    ex.tracked = true;
    this.#d.load.requestStarted(route.appId);
    this.#d.metrics.requestStarted(route.appId, route.appName);
  }

  /** Route checks shared by plain requests and upgrades; returns the failure to answer, if any. */
  #admit(req: IncomingMessage, ex: Exchange): { route: AppRoute } | { fail: RouterCode } {
    if (!ex.target) return { fail: "BAD_REQUEST" };
    const route = this.lookup(ex.host);
    if (!route) return { fail: "NO_APP" };
    ex.route = route;
    if (route.maintenance) return { fail: "H80" };
    const max = this.#d.limits.maxBodyBytes;
    const len = req.headers["content-length"];
    if (max > 0 && len !== undefined && Number(len) > max) return { fail: "H25" };
    return { route };
  }

  /**
   * Wait for a ready instance (activator), pick one, try it; on connect failure try the
   * others. Returns the code to answer with, or undefined when `attempt` answered.
   */
  async #dispatch(ex: Exchange, route: AppRoute, signal: AbortSignal, attempt: (r: AppRoute, i: InstanceRoute) => Promise<Outcome>): Promise<RouterCode | undefined> {
    const { activator, table, balancer } = this.#d;
    const appId = route.appId;
    const tried = new Set<string>();
    let failure: RouterCode = "H10";
    let staleRetry = false;
    for (;;) {
      if (!activator.isReady(appId)) {
        try {
          await activator.wait(appId, signal);
        } catch (err) {
          if (err instanceof ActivationError) return err.code;
          throw err;
        }
      }
      if (signal.aborted) return "H27";
      const current = table.get(appId);
      if (!current) return "NO_APP";
      ex.route = current;
      const inst = balancer.pick(appId, table.readyInstances(appId), tried);
      if (!inst) return failure;
      const key = instanceKey(inst);
      tried.add(key);
      const out = await attempt(current, inst);
      if (out.kind === "done") return undefined;
      if (signal.aborted) return "H27";
      failure = out.code;
      // A keep-alive socket the app had already closed: the request never reached it.
      if (out.sameAgain && !staleRetry) {
        staleRetry = true;
        tried.delete(key);
      }
    }
  }

  async #serve(req: IncomingMessage, res: ServerResponse, ex: Exchange): Promise<void> {
    if (this.#d.adminHost && ex.host === this.#d.adminHost) {
      ex.skipLog = true;
      this.#d.admin(req, res);
      return;
    }
    const admitted = this.#admit(req, ex);
    if ("fail" in admitted) return this.#fail(req, res, ex, admitted.fail);
    this.#track(ex, admitted.route);
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    const failed = await this.#dispatch(ex, admitted.route, abort.signal, (route, inst) => this.#forward(req, res, ex, route, inst));
    if (failed) this.#fail(req, res, ex, failed);
  }

  /** One attempt against one instance; resolves when the exchange is over or should be retried. */
  #forward(req: IncomingMessage, res: ServerResponse, ex: Exchange, route: AppRoute, inst: InstanceRoute): Promise<Outcome> {
    const { clock, limits, agent } = this.#d;
    return new Promise<Outcome>((resolve) => {
      const release = this.#d.balancer.acquire(inst);
      const t0 = clock.now();
      let connected = false;
      let responded = false;
      let settled = false;
      let bodyBytes = 0;
      let connectTimer: TimerHandle | undefined;
      let responseTimer: TimerHandle | undefined;
      let detachBody: () => void = () => {};
      ex.dyno = inst.name;

      const settle = (o: Outcome) => {
        if (settled) return;
        settled = true;
        if (connectTimer) clock.clearTimeout(connectTimer);
        if (responseTimer) clock.clearTimeout(responseTimer);
        res.off("close", onClientClose);
        release();
        resolve(o);
      };
      const onClientClose = () => {
        if (settled) return;
        ex.code ??= "H27";
        detachBody();
        preq.destroy();
        settle({ kind: "done" });
      };
      res.once("close", onClientClose);

      let preq: ClientRequest;
      try {
        preq = http.request({
          host: inst.host,
          port: inst.port,
          method: req.method,
          path: ex.target,
          agent,
          headers: this.#upstream(req, ex, false),
        });
      } catch (err) {
        this.#d.logger.warn("request rejected by http client", { requestId: ex.requestId, err });
        settle({ kind: "done" });
        this.#fail(req, res, ex, "BAD_REQUEST");
        return;
      }

      connectTimer = clock.setTimeout(() => {
        preq.destroy(Object.assign(new Error("connect timeout"), { code: "BERTH_CONNECT_TIMEOUT" }));
      }, limits.connectTimeoutMs);

      const onConnect = () => {
        if (connected || settled) return;
        connected = true;
        if (connectTimer) clock.clearTimeout(connectTimer);
        ex.connectMs = clock.now() - t0;
        ex.serviceStart = clock.now();
        responseTimer = clock.setTimeout(() => {
          if (responded || settled) return;
          detachBody();
          preq.destroy();
          settle({ kind: "done" });
          this.#fail(req, res, ex, "H12");
        }, route.timeoutMs);
        detachBody = this.#pumpBody(req, preq, (n) => {
          bodyBytes += n;
          if (limits.maxBodyBytes > 0 && bodyBytes > limits.maxBodyBytes) {
            detachBody();
            preq.destroy();
            settle({ kind: "done" });
            this.#fail(req, res, ex, "H25");
            return false;
          }
          return true;
        });
      };
      preq.on("socket", (sock: Socket) => {
        if (sock.connecting) sock.once("connect", onConnect);
        else onConnect();
      });

      preq.on("response", (pres: IncomingMessage) => {
        pres.on("error", () => {});
        if (settled) {
          pres.destroy();
          return;
        }
        responded = true;
        if (responseTimer) clock.clearTimeout(responseTimer);
        const status = pres.statusCode ?? 0;
        try {
          res.writeHead(status, downstreamHeaders(pres.headersDistinct));
        } catch (err) {
          this.#d.logger.warn("unusable backend response", { requestId: ex.requestId, status, err });
          detachBody();
          preq.destroy();
          settle({ kind: "done" });
          this.#fail(req, res, ex, "H17");
          return;
        }
        preq.setTimeout(limits.idleTimeoutMs, () => {
          ex.code ??= "H15";
          preq.destroy();
          res.destroy();
          settle({ kind: "done" });
        });
        const onDrain = () => pres.resume();
        res.on("drain", onDrain);
        pres.on("data", (chunk: Buffer) => {
          ex.bytes += chunk.length;
          if (!res.write(chunk)) pres.pause();
        });
        pres.once("end", () => {
          ex.serviceEnd = clock.now();
          res.off("drain", onDrain);
          res.end();
          settle({ kind: "done" });
        });
        pres.once("close", () => {
          if (settled || pres.complete) return;
          // The app died mid-response: the status is out, so the client must see a broken stream.
          ex.code ??= "H18";
          ex.serviceEnd = clock.now();
          res.destroy();
          settle({ kind: "done" });
        });
      });

      preq.on("error", (err: Error) => {
        if (settled) return;
        const code = errCode(err);
        if (!connected) {
          // Nothing reached the app: safe to try another instance whatever the method.
          this.#d.logger.warn("backend connect failed", { requestId: ex.requestId, dyno: inst.name, code });
          settle({ kind: "retry", code: code === "BERTH_CONNECT_TIMEOUT" ? "H19" : "H10" });
          return;
        }
        detachBody();
        if (!responded) {
          if (preq.reusedSocket && code === "ECONNRESET" && bodyBytes === 0) {
            settle({ kind: "retry", code: "H13", sameAgain: true });
            return;
          }
          settle({ kind: "done" });
          this.#fail(req, res, ex, code.startsWith("HPE_") ? "H17" : "H13");
          return;
        }
        ex.code ??= "H18";
        res.destroy();
        settle({ kind: "done" });
      });
    });
  }

  /**
   * Stream the client's body into the upstream request with backpressure. `count`
   * sees each chunk's size and may refuse it. Returns a function that stops the pump
   * (leaving the body unread for a retry when nothing was sent).
   */
  #pumpBody(req: IncomingMessage, preq: ClientRequest, count: (n: number) => boolean): () => void {
    if (req.readableEnded) {
      preq.end();
      return () => {};
    }
    const onData = (chunk: Buffer) => {
      if (!count(chunk.length)) return;
      if (!preq.write(chunk)) req.pause();
    };
    const onEnd = () => preq.end();
    const onDrain = () => req.resume();
    req.on("data", onData);
    req.once("end", onEnd);
    preq.on("drain", onDrain);
    req.resume();
    return () => {
      req.off("data", onData);
      req.off("end", onEnd);
      preq.off("drain", onDrain);
      req.pause();
    };
  }

  #upstream(req: IncomingMessage, ex: Exchange, upgrade: boolean): OutgoingHttpHeaders {
    return upstreamHeaders(req, {
      requestId: ex.requestId,
      startMs: ex.startMs,
      proto: this.#d.proto,
      port: ex.port,
      forwardedFor: ex.fwd,
      upgrade,
    });
  }

  /** Answer with the router's own page for `code`, or cut the connection if the response already started. */
  #fail(req: IncomingMessage, res: ServerResponse, ex: Exchange, code: RouterCode): void {
    ex.code = code;
    if (res.headersSent || res.destroyed || res.writableEnded) {
      res.destroy();
      return;
    }
    const page = errorPage(code, ex.requestId, wantsJson(req.headers.accept));
    const body = Buffer.from(page.body);
    ex.bytes = body.length;
    res.statusCode = page.status;
    res.setHeader("content-type", page.contentType);
    res.setHeader("content-length", body.length);
    res.setHeader("cache-control", "no-store");
    res.setHeader("x-request-id", ex.requestId);
    res.setHeader("via", "1.1 berth");
    // An unread body would otherwise be parsed as the next request on this connection.
    if (!req.complete) res.setHeader("connection", "close");
    res.end(body);
  }

  #failRaw(req: IncomingMessage, socket: Duplex, ex: Exchange, code: RouterCode): void {
    ex.code = code;
    if (socket.destroyed || !socket.writable || ex.status === 101) {
      socket.destroy();
      return;
    }
    const page = errorPage(code, ex.requestId, wantsJson(req.headers.accept));
    const body = Buffer.from(page.body);
    ex.status = page.status;
    ex.bytes = body.length;
    const head = rawHeaderBlock(page.status, STATUS_CODES[page.status] ?? "Error", {
      "content-type": page.contentType,
      "content-length": String(body.length),
      "cache-control": "no-store",
      "x-request-id": ex.requestId,
      via: "1.1 berth",
      connection: "close",
    });
    socket.end(Buffer.concat([Buffer.from(head, "latin1"), body]));
  }

  async #serveUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ex: Exchange): Promise<void> {
    const admitted = this.#admit(req, ex);
    if ("fail" in admitted) return this.#failRaw(req, socket, ex, admitted.fail);
    this.#track(ex, admitted.route);
    const abort = new AbortController();
    socket.once("close", () => abort.abort());
    const failed = await this.#dispatch(ex, admitted.route, abort.signal, (route, inst) => this.#forwardUpgrade(req, socket, head, ex, route, inst));
    if (failed) this.#failRaw(req, socket, ex, failed);
  }

  #forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ex: Exchange, route: AppRoute, inst: InstanceRoute): Promise<Outcome> {
    const { clock, limits } = this.#d;
    return new Promise<Outcome>((resolve) => {
      const release = this.#d.balancer.acquire(inst);
      const t0 = clock.now();
      let connected = false;
      let responded = false;
      let settled = false;
      let connectTimer: TimerHandle | undefined;
      let responseTimer: TimerHandle | undefined;
      ex.dyno = inst.name;
      const clearTimers = () => {
        if (connectTimer) clock.clearTimeout(connectTimer);
        if (responseTimer) clock.clearTimeout(responseTimer);
      };
      // The instance stays "outstanding" for the balancer while the websocket is open.
      const settle = (o: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimers();
        socket.off("close", onClientClose);
        release();
        resolve(o);
      };
      const onClientClose = () => {
        ex.code ??= responded ? undefined : "H27";
        preq.destroy();
        settle({ kind: "done" });
      };
      socket.once("close", onClientClose);

      let preq: ClientRequest;
      try {
        // A fresh connection: an upgraded socket never goes back to a keep-alive pool.
        preq = http.request({ host: inst.host, port: inst.port, method: req.method, path: ex.target, agent: false, headers: this.#upstream(req, ex, true) });
      } catch (err) {
        this.#d.logger.warn("upgrade rejected by http client", { requestId: ex.requestId, err });
        settle({ kind: "done" });
        this.#failRaw(req, socket, ex, "BAD_REQUEST");
        return;
      }
      connectTimer = clock.setTimeout(() => {
        preq.destroy(Object.assign(new Error("connect timeout"), { code: "BERTH_CONNECT_TIMEOUT" }));
      }, limits.connectTimeoutMs);
      preq.on("socket", (sock: Socket) => {
        const onConnect = () => {
          connected = true;
          if (connectTimer) clock.clearTimeout(connectTimer);
          ex.connectMs = clock.now() - t0;
          ex.serviceStart = clock.now();
          responseTimer = clock.setTimeout(() => {
            if (responded || settled) return;
            preq.destroy();
            settle({ kind: "done" });
            this.#failRaw(req, socket, ex, "H12");
          }, route.timeoutMs);
        };
        if (sock.connecting) sock.once("connect", onConnect);
        else onConnect();
      });

      preq.on("upgrade", (pres: IncomingMessage, psock: Socket, phead: Buffer) => {
        responded = true;
        clearTimers();
        psock.on("error", () => psock.destroy());
        if (settled || socket.destroyed) {
          psock.destroy();
          settle({ kind: "done" });
          return;
        }
        ex.status = pres.statusCode ?? 101;
        socket.write(rawHeaderBlock(ex.status, "Switching Protocols", downstreamHeaders(pres.headersDistinct, { upgrade: true })));
        if (phead.length) socket.write(phead);
        if (head.length) psock.write(head);
        psock.on("data", (c: Buffer) => {
          ex.bytes += c.length;
        });
        const closeBoth = () => {
          ex.serviceEnd ??= clock.now();
          psock.destroy();
          socket.destroy();
          settle({ kind: "done" });
        };
        const idle = () => {
          ex.code ??= "H15";
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
        responded = true;
        clearTimers();
        pres.on("error", () => socket.destroy());
        ex.status = pres.statusCode ?? 502;
        const headers = downstreamHeaders(pres.headersDistinct);
        headers["connection"] = "close";
        delete headers["content-length"];
        socket.write(rawHeaderBlock(ex.status, STATUS_CODES[ex.status] ?? "Unknown", headers));
        pres.on("data", (c: Buffer) => {
          ex.bytes += c.length;
        });
        pres.pipe(socket);
        pres.once("end", () => settle({ kind: "done" }));
        pres.once("close", () => {
          if (!pres.complete) socket.destroy();
          settle({ kind: "done" });
        });
      });

      preq.on("error", (err: Error) => {
        if (settled) return;
        const code = errCode(err);
        if (!connected) {
          settle({ kind: "retry", code: code === "BERTH_CONNECT_TIMEOUT" ? "H19" : "H10" });
          return;
        }
        settle({ kind: "done" });
        if (!responded) this.#failRaw(req, socket, ex, code.startsWith("HPE_") ? "H17" : "H13");
        else socket.destroy();
      });
      preq.end();
    });
  }
}
