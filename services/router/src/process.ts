/** The router process: follows the control plane's routes and proxies. */
import { consoleLogger, ensureSecrets, loadConfig } from "@berth/core";
import { controlPlaneReporter, controlPlaneWaker, followRoutes } from "./controlplane.ts";
import { startRouter } from "./main.ts";
import { RouteTable } from "./routes.ts";


const config = loadConfig(process.env, process.cwd());
const logger = consoleLogger({ svc: "router" });
const { internalToken } = ensureSecrets(config);
const table = new RouteTable();
const feed = followRoutes({ apiUrl: config.apiUrl, token: internalToken, table, logger });
const waker = controlPlaneWaker(config.apiUrl, internalToken, table);
const reporter = controlPlaneReporter(config.apiUrl, internalToken, logger);
const running = await startRouter(
  { host: config.BERTH_ROUTER_HOST, port: config.BERTH_ROUTER_PORT, adminPort: config.BERTH_ROUTER_ADMIN_PORT, baseDomain: config.BERTH_BASE_DOMAIN },
  { table, waker, scaler: waker, logger, onAccessLog: reporter.accessLog, onColdStart: reporter.coldStart },
);
await Promise.race([feed.ready, new Promise((r) => setTimeout(r, 5000))]);

const drain = async () => {
  feed.close();
  reporter.flush();
  await running.stop();
  process.exit(0);
};
process.on("SIGTERM", () => void drain());
process.on("SIGINT", () => void drain());
