/**
 * Shared setup for the router's socket tests: a router on 127.0.0.1:0 with a table,
 * captured access lines and cold starts, torn down by `closeAll`.
 */
import type http from "node:http";
import { silentLogger } from "@berth/core";
import type { AccessLogEntry } from "./accesslog.ts";
import type { Scaler, Waker } from "./autoscaler.ts";
import { RouteTable, type AppRoute } from "./routes.ts";
import { createRouter, type Router, type RouterLimits } from "./server.ts";
import { startBackend, type Backend } from "./testkit.ts";

export interface Harness {
  table: RouteTable;
  router: Router;
  port: number;
  lines: string[];
  entries: AccessLogEntry[];
  colds: [string, number, string][];
  /** Publish an app with instances on the given local ports. */
  app(name: string, ports: number[], over?: Partial<AppRoute>): AppRoute;
}

const open: Router[] = [];

export function appRoute(name: string, ports: number[], over: Partial<AppRoute> = {}): AppRoute {
  return {
    appId: `id-${name}`,
    appName: name,
    hosts: [],
    instances: ports.map((port, i) => ({ name: `web.${i + 1}`, host: "127.0.0.1", port })),
    maintenance: false,
    timeoutMs: 30_000,
    scale: { min: 0, max: 10, targetConcurrency: 10, idleFreezeMs: 0, idleStopMs: 0 },
    ...over,
  };
}

export async function startRouter(opts: { limits?: Partial<RouterLimits>; waker?: Waker; scaler?: Scaler } = {}): Promise<Harness> {
  const table = new RouteTable();
  const lines: string[] = [];
  const entries: AccessLogEntry[] = [];
  const colds: [string, number, string][] = [];
  const router = createRouter({
    table,
    waker: opts.waker ?? { wake: async () => {}, stop: async () => {} },
    ...(opts.scaler ? { scaler: opts.scaler } : {}),
    logger: silentLogger,
    baseDomain: "localhost",
    adminHost: "router.internal",
    limits: { connectTimeoutMs: 1000, ...opts.limits },
    onAccessLog: (line, e) => {
      lines.push(line);
      entries.push(e);
    },
    onColdStart: (...a) => colds.push(a),
  });
  open.push(router);
  const { port } = await router.listen(0, "127.0.0.1");
  return {
    table,
    router,
    port,
    lines,
    entries,
    colds,
    app(name, ports, over) {
      const r = appRoute(name, ports, over);
      table.upsert(r);
      return r;
    },
  };
}

const backends: Backend[] = [];

/** A backend app on 127.0.0.1, closed by `closeAll`. */
export async function backend(handler: http.RequestListener): Promise<Backend> {
  const b = await startBackend(handler);
  backends.push(b);
  return b;
}

export async function closeAll(): Promise<void> {
  await Promise.all(open.splice(0).map((r) => r.close(200)));
  await Promise.all(backends.splice(0).map((b) => b.close()));
}
