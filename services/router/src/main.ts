import type { Clock, Logger } from "@berth/core";
import type { AccessLogEntry } from "./accesslog.ts";
import type { ColdTier, Scaler, Waker } from "./autoscaler.ts";
import { parseRouterConfig } from "./config.ts";
import type { RouteTable } from "./routes.ts";
import { createRouter, type Router } from "./server.ts";

/** What the process wiring supplies: the table the control plane feeds and the ports to it. */
export interface RouterDeps {
  table: RouteTable;
  waker: Waker;
  scaler?: Scaler;
  logger: Logger;
  clock?: Clock;
  onAccessLog?: (line: string, entry: AccessLogEntry) => void;
  onColdStart?: (appId: string, ms: number, tier: ColdTier) => void;
}

export interface RunningRouter {
  router: Router;
  url: string;
  adminUrl: string;
  /** Drain and stop (what SIGTERM should call). */
  stop(): Promise<void>;
}

/** Parse config, build the router, listen on both ports. Signals are the caller's business. */
export async function startRouter(config: unknown, deps: RouterDeps): Promise<RunningRouter> {
  const cfg = parseRouterConfig(config);
  const router = createRouter({
    table: deps.table,
    waker: deps.waker,
    ...(deps.scaler ? { scaler: deps.scaler } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
    logger: deps.logger,
    baseDomain: cfg.baseDomain,
    limits: cfg.limits,
    autoscale: cfg.autoscale,
    proto: cfg.proto,
    ...(cfg.adminVirtualHost ? { adminHost: cfg.adminVirtualHost } : {}),
    ...(deps.onAccessLog ? { onAccessLog: deps.onAccessLog } : {}),
    ...(deps.onColdStart ? { onColdStart: deps.onColdStart } : {}),
  });
  const pub = await router.listen(cfg.port, cfg.host);
  const adm = await router.listenAdmin(cfg.adminPort, cfg.adminHost);
  deps.logger.info("router listening", { addr: `${pub.address}:${pub.port}`, admin: `${adm.address}:${adm.port}` });
  const hostPort = (a: { address: string; port: number }) => (a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  return {
    router,
    url: `http://${hostPort(pub)}`,
    adminUrl: `http://${hostPort(adm)}`,
    stop: () => router.close(cfg.drainMs),
  };
}
