import http, { STATUS_CODES } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { consoleLogger, systemClock, type Clock, type Logger } from "@berth/core";
import { Activator } from "./activator.ts";
import type { AccessLogEntry } from "./accesslog.ts";
import { Autoscaler, type AutoscalerTuning, type ColdTier, type Scaler, type Waker } from "./autoscaler.ts";
import { Balancer } from "./balancer.ts";
import { RouterMetrics, type AppGauges } from "./metrics.ts";
import { HttpProxy, RouterResponse } from "./proxy.ts";
import { normalizeHost, type RouteTable } from "./routes.ts";
import { UpstreamPool } from "./upstream.ts";

/** Bounds on what one client may cost the router. */
export interface RouterLimits {
  /** Request line + headers; larger gets 431 (node's maxHeaderSize). */
  maxHeaderBytes: number;
  /** Request body; larger gets 413. 0 = unlimited. */
  maxBodyBytes: number;
  /** Time a client has to send its full request head (slowloris bound); 408 after. */
  headersTimeoutMs: number;
  /** Time a client has to send the whole request, body included; 0 = unlimited. */
  requestTimeoutMs: number;
  /** How often node checks the two timeouts above. */
  timeoutCheckIntervalMs: number;
  /** Idle keep-alive connections from clients are closed after this. */
  keepAliveTimeoutMs: number;
  connectTimeoutMs: number;
  /** Longest silence on a flowing response or websocket (Heroku's 55 s window). */
  idleTimeoutMs: number;
  /** Requests held per app while it wakes. */
  maxQueue: number;
  /** Longest a held request waits for a ready instance (H20). */
  bootTimeoutMs: number;
  /** Concurrent connections to one instance. */
  maxSocketsPerBackend: number;
}

/** Idle keep-alive connections kept per instance. */
const MAX_FREE_SOCKETS_PER_BACKEND = 64;

export const DEFAULT_LIMITS: RouterLimits = {
  maxHeaderBytes: 16 * 1024,
  maxBodyBytes: 100 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  timeoutCheckIntervalMs: 1_000,
  keepAliveTimeoutMs: 60_000,
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 55_000,
  maxQueue: 100,
  bootTimeoutMs: 60_000,
  maxSocketsPerBackend: 256,
};

export interface RouterOptions {
  table: RouteTable;
  waker: Waker;
  /** Without a scaler the router still idles apps to zero, but never changes their size. */
  scaler?: Scaler;
  clock?: Clock;
  logger?: Logger;
  /** Apps answer at `<name>.<baseDomain>`, e.g. localhost. */
  baseDomain: string;
  limits?: Partial<RouterLimits>;
  autoscale?: Partial<AutoscalerTuning>;
  /** Host header that reaches /metrics and /healthz on the public listener too. */
  adminHost?: string;
  /** What X-Forwarded-Proto says; "https" when a TLS terminator sits in front. */
  proto?: "http" | "https";
  onAccessLog?: (line: string, entry: AccessLogEntry) => void;
  onColdStart?: (appId: string, ms: number, tier: ColdTier) => void;
}

/** A running router: the public listener, the admin listener and their parts. */
export interface Router {
  readonly server: http.Server;
  /** Serves GET /metrics (Prometheus) and GET /healthz. */
  readonly admin: http.Server;
  readonly metrics: RouterMetrics;
  readonly autoscaler: Autoscaler;
  readonly activator: Activator;
  readonly limits: RouterLimits;
  listen(port: number, host?: string): Promise<AddressInfo>;
  listenAdmin(port: number, host?: string): Promise<AddressInfo>;
  /** Stop accepting, let in-flight requests finish for up to graceMs, then cut the rest. */
  close(graceMs?: number): Promise<void>;
}

function checkLimits(l: RouterLimits): RouterLimits {
  for (const [k, v] of Object.entries(l)) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new RangeError(`router limits.${k} must be a non-negative number, got ${String(v)}`);
  }
  if (l.requestTimeoutMs > 0 && l.headersTimeoutMs > l.requestTimeoutMs) {
    throw new RangeError(`router limits.headersTimeoutMs (${l.headersTimeoutMs}) must not exceed limits.requestTimeoutMs (${l.requestTimeoutMs})`);
  }
  for (const k of ["maxHeaderBytes", "headersTimeoutMs", "timeoutCheckIntervalMs", "connectTimeoutMs", "idleTimeoutMs", "bootTimeoutMs", "maxSocketsPerBackend"] as const) {
    if (l[k] === 0) throw new RangeError(`router limits.${k} must be > 0`);
  }
  return l;
}

function listenOn(server: http.Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function clientErrorStatus(code: string | undefined): number {
  if (code === "HPE_HEADER_OVERFLOW") return 431;
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") return 408;
  return 400;
}

/** Build the router: route table in, http servers out. Nothing listens until `listen`. */
export function createRouter(opts: RouterOptions): Router {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? consoleLogger({ svc: "router" });
  const limits = checkLimits({ ...DEFAULT_LIMITS, ...opts.limits });
  const table = opts.table;
  const metrics = new RouterMetrics();
  const autoscaler = new Autoscaler({ clock, logger, waker: opts.waker, source: table, ...(opts.scaler ? { scaler: opts.scaler } : {}), ...opts.autoscale });
  const activator = new Activator({
    table,
    waker: autoscaler,
    clock,
    logger,
    maxQueue: limits.maxQueue,
    maxWaitMs: limits.bootTimeoutMs,
    onColdStart: (appId, ms, tier) => {
      metrics.coldStart(appId, table.get(appId)?.appName ?? appId, tier, ms);
      opts.onColdStart?.(appId, ms, tier);
    },
  });
  const upstream = new UpstreamPool({
    maxSockets: limits.maxSocketsPerBackend,
    maxFreeSockets: MAX_FREE_SOCKETS_PER_BACKEND,
    idleTimeoutMs: limits.idleTimeoutMs,
    clock,
  });

  const gauges = function* (): Generator<AppGauges> {
    for (const r of table.routes()) {
      const s = autoscaler.status(r.appId);
      yield {
        appId: r.appId,
        appName: r.appName,
        readyInstances: table.readyCount(r.appId),
        instances: r.instances.length,
        queued: activator.queued(r.appId),
        ...(s?.desired !== undefined ? { desiredInstances: s.desired } : {}),
        panicking: s?.panicking ?? false,
        ...(s?.sleeping ? { sleeping: s.sleeping } : {}),
      };
    }
  };
  const adminHandler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if ((req.method === "GET" || req.method === "HEAD") && path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" });
      res.end(metrics.render(gauges()));
    } else if ((req.method === "GET" || req.method === "HEAD") && path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      res.end("ok\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("not found\n");
    }
  };

  const proxy = new HttpProxy({
    table,
    balancer: new Balancer(),
    activator,
    load: autoscaler,
    metrics,
    clock,
    logger,
    upstream,
    baseDomain: normalizeHost(opts.baseDomain),
    proto: opts.proto ?? "http",
    limits: { maxBodyBytes: limits.maxBodyBytes, connectTimeoutMs: limits.connectTimeoutMs, idleTimeoutMs: limits.idleTimeoutMs },
    ...(opts.adminHost ? { adminHost: normalizeHost(opts.adminHost) } : {}),
    admin: adminHandler,
    ...(opts.onAccessLog ? { onAccessLog: opts.onAccessLog } : {}),
  });

  const server = http.createServer({
    // Carries its exchange, so per-request listeners need no closures (proxy.ts).
    ServerResponse: RouterResponse,
    // Requests without Content-Length or Transfer-Encoding skip the body stream's life cycle.
    optimizeEmptyRequests: true,
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
  });
  server.on("request", proxy.handleRequest);
  server.on("upgrade", proxy.handleUpgrade);
  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => {
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const status = clientErrorStatus(err.code);
    const body = `${status} ${STATUS_CODES[status]}\n`;
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\nVia: 1.1 berth\r\n\r\n${body}`);
  });
  server.on("error", (err) => logger.error("router listener error", { err }));

  const admin = http.createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs }, adminHandler);
  admin.on("clientError", (_err, socket: Duplex) => socket.destroy());

  let closing: Promise<void> | undefined;
  return {
    server,
    admin,
    metrics,
    autoscaler,
    activator,
    limits,
    async listen(port, host = "127.0.0.1") {
      const addr = await listenOn(server, port, host);
      autoscaler.start();
      return addr;
    },
    listenAdmin(port, host = "127.0.0.1") {
      return listenOn(admin, port, host);
    },
    close(graceMs = 10_000) {
      closing ??= (async () => {
        autoscaler.stop();
        const closed = (s: http.Server) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()));
        const done = Promise.all([closed(server), closed(admin)]);
        server.closeIdleConnections();
        admin.closeIdleConnections();
        const grace = Promise.withResolvers<void>();
        const timer = clock.setTimeout(grace.resolve, graceMs);
        await Promise.race([done, grace.promise]);
        clock.clearTimeout(timer);
        activator.close();
        server.closeAllConnections();
        admin.closeAllConnections();
        for (const s of proxy.upgraded) s.destroy();
        await done;
        upstream.close();
      })();
      return closing;
    },
  };
}
