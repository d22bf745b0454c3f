/**
 * The whole platform in one test process, on real components: Postgres, the
 * Platform API with git and the deployer, the builder service, the local runtime
 * (runc where it works) and the router following the API's route feed.
 */
import { execFile, spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { mkdtemp, mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { serve, type ServerType } from "@hono/node-server";
import { silentLogger, systemClock, consoleLogger, type Logger } from "@berth/core";
import { appConfigVars, pgEventBus } from "@berth/db";
import { createLocalRuntime, type LocalRuntime } from "@berth/runtime/local/index";
import type { Runtime } from "@berth/runtime";
import { createLocalBlobStore } from "@berth/blobstore/local/index";
import { bwrapAvailable, bwrapExec, defaultOrder, spawnExec, trustEnv } from "@berth/buildpacks";
import { assemblePlatformApi, newKeySpec } from "@berth/api";
import { BuilderService, BuildQueue } from "@berth/builder";
import { RouteTable, controlPlaneReporter, controlPlaneWaker, followRoutes, startRouter, type RunningRouter } from "@berth/router";
import { freshDatabase } from "./db.ts";

const run = promisify(execFile);

export interface TestPlatform<R extends Runtime = LocalRuntime> {
  apiUrl: string;
  routerUrl: string;
  runtime: R;
  /** The router's route table, as the route feed keeps it. */
  routes: RouteTable;
  /** Stops the router and starts a fresh one (empty table, same port) that restores its routes from the feed. */
  restartRouter(): Promise<void>;
  platform: ReturnType<typeof assemblePlatformApi>;
  db: Awaited<ReturnType<typeof freshDatabase>>["db"];
  dir: string;
  user(): Promise<{ token: string; email: string; id: string }>;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  /** GET through the router with the app's Host header. */
  get(host: string, path?: string, init?: { method?: string; headers?: Record<string, string> }): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }>;
  /** Runs git in `repo`; never throws, returns exit code and output. */
  git(repo: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A new git repository with `files` committed on main. */
  repo(files: Record<string, string>): Promise<string>;
  remote(app: string, token: string): string;
  close(): Promise<void>;
}

export interface PlatformOptions<R extends Runtime> {
  isolation?: "runc" | "process";
  log?: boolean;
  internalToken?: string;
  /** host:port the builder pushes images to. */
  registry?: string;
  bootTimeoutMs?: number;
  /** How long a stopping instance has between SIGTERM and SIGKILL. Default 2 s (the platform's is 10 s). */
  graceMs?: number;
  /** Another runtime than the local one (the Kubernetes tests). */
  runtime?: (ctx: { dir: string; logger: Logger }) => Promise<R>;
}

export async function startPlatform(opts?: PlatformOptions<LocalRuntime>): Promise<TestPlatform<LocalRuntime>>;
export async function startPlatform<R extends Runtime>(opts: PlatformOptions<R> & { runtime: (ctx: { dir: string; logger: Logger }) => Promise<R> }): Promise<TestPlatform<R>>;
export async function startPlatform(opts: PlatformOptions<Runtime> = {}): Promise<TestPlatform<Runtime>> {
  const logger: Logger = opts.log ? consoleLogger({ test: "platform" }) : silentLogger;
  const data = await freshDatabase();
  const dir = await mkdtemp(join(tmpdir(), "berth-platform-"));
  const events = await pgEventBus(data.url, logger);
  const blobs = createLocalBlobStore({ root: join(dir, "blobs") });
  const runtime: Runtime = opts.runtime
    ? await opts.runtime({ dir, logger })
    : await createLocalRuntime({ stateDir: join(dir, "runtime"), clock: systemClock, logger, nodeBinary: process.execPath, preferRunc: opts.isolation !== "process" });
  const internalToken = opts.internalToken ?? "test-internal-token-0123456789";
  let apiUrl = "";
  const platform = assemblePlatformApi({
    db: data.db,
    clock: systemClock,
    logger,
    configKeys: newKeySpec(),
    sources: blobs,
    events,
    runtime,
    reposDir: join(dir, "repos"),
    internalUrl: () => apiUrl,
    internalToken,
    maxPushBytes: 50 * 1024 * 1024,
    bootTimeoutMs: opts.bootTimeoutMs ?? 15_000,
    graceMs: opts.graceMs ?? 2_000,
    releasePhaseTimeoutMs: 60_000,
    settings: {
      signupOpen: true,
      baseDomain: "localhost",
      get publicUrl() {
        return apiUrl;
      },
      maxBodyBytes: 1024 * 1024,
      sessionTtlMs: 3_600_000,
      requestsPerHour: 100_000,
      secureCookies: false,
      dynoQuotaPerTeam: 50,
      allowedSourceHosts: [],
      sourceOrigins: [],
      signingSecret: "test-signing-secret-0123456789",
      maxSourceBytes: 50 * 1024 * 1024,
    },
    passwordCost: { memoryKiB: 1024, iterations: 1 },
    loginLimits: { perAccount: 50, perAddress: 500, windowMs: 60_000 },
  });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: platform.app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
  });
  apiUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const builder = new BuilderService(
    {
      db: data.db,
      // The api's key ring: builds see the app's config vars as the api stored them.
      configVars: appConfigVars(data.db, platform.keyring),
      events,
      queue: new BuildQueue(data.db, systemClock, `test-${process.pid}`),
      sources: blobs,
      logger,
      clock: systemClock,
      layoutDir: join(dir, "images"),
      cacheDir: join(dir, "build-cache"),
      workDir: join(dir, "builds"),
      order: defaultOrder(),
      // The sandbox production uses, where this machine has bubblewrap.
      exec: (await bwrapAvailable()) ? bwrapExec({ passEnv: trustEnv(process.env) }) : spawnExec({ passEnv: trustEnv(process.env) }),
      registry: opts.registry ? { host: opts.registry, insecure: true } : undefined,
      limits: { sourceBytes: 50 * 1024 * 1024, sourceEntries: 10_000, buildTimeoutMs: 120_000, logLines: 5000, imageBytes: 2 * 1024 ** 3 },
      heartbeatMs: 1000,
    },
    { concurrency: 2, pollMs: 1000, reapEveryMs: 5000, staleMs: 30_000, maxAttempts: 2 },
  );

  // Wakes answer with the app's instances, which go into the router's current table.
  const controlPlane = controlPlaneWaker(apiUrl, internalToken, { get: (id) => current.table.get(id), setInstances: (id, i) => current.table.setInstances(id, i) });
  // A runtime that cannot freeze (Kubernetes) idles apps straight to zero.
  const waker = runtime.canFreeze ? controlPlane : { wake: controlPlane.wake, stop: controlPlane.stop, scale: controlPlane.scale };
  const reporter = controlPlaneReporter(apiUrl, internalToken, logger);
  const bootRouter = async (port: number) => {
    const t = new RouteTable();
    const f = followRoutes({ apiUrl, token: internalToken, table: t, logger });
    const r: RunningRouter = await startRouter(
      { host: "127.0.0.1", port, adminPort: 0, baseDomain: "localhost" },
      { table: t, waker, scaler: waker, logger, onAccessLog: reporter.accessLog, onColdStart: reporter.coldStart },
    );
    await f.ready;
    return { table: t, feed: f, router: r };
  };
  let current = await bootRouter(0);
  const routerUrl = current.router.url;

  const client = clientFor(apiUrl, dir);
  return {
    apiUrl,
    routerUrl,
    runtime,
    get routes() {
      return current.table;
    },
    async restartRouter() {
      current.feed.close();
      await current.router.stop();
      current = await bootRouter(Number(new URL(routerUrl).port));
    },
    platform,
    db: data.db,
    dir,
    ...client,
    get(host, path = "/", init = {}) {
      return viaRouter(routerUrl, host, path, init);
    },
    async close() {
      current.feed.close();
      await current.router.stop();
      await builder.stop();
      await new Promise<void>((r) => server.close(() => r()));
      if ("stopAll" in runtime) await (runtime as LocalRuntime).stopAll();
      await runtime.close();
      platform.close();
      await events.close();
      await data.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** One request through the router with a chosen Host header (fetch may not set Host). */
export function viaRouter(routerUrl: string, host: string, path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const u = new URL(routerUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method: init.method ?? "GET", headers: { ...init.headers, Host: host }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

// ---------------------------------------------------------------- the platform as real processes

/** What a test may do against the platform processes (scripts/start.ts). */
export interface PlatformProcesses {
  apiUrl: string;
  routerUrl: string;
  /** Where the api keeps its runtime state (BERTH_DATA_DIR/runtime). */
  dataDir: string;
  /** scripts/start.ts itself. */
  startPid: number;
  /** The pid of start.ts's live child for `service`, or undefined while there is none. */
  childPid(service: "api" | "builder" | "router"): Promise<number | undefined>;
  /** The last `chars` of what start.ts and its children printed (for failure messages). */
  output(chars?: number): Promise<string>;
  call: TestPlatform["call"];
  user: TestPlatform["user"];
  get: TestPlatform["get"];
  git: TestPlatform["git"];
  repo: TestPlatform["repo"];
  remote: TestPlatform["remote"];
  /** Stops start.ts (its children drain), then kills every app instance left on the data dir. */
  close(): Promise<void>;
}

export interface PlatformProcessOptions {
  isolation?: "runc" | "process";
  /** Milliseconds to wait for the api and router to answer /healthz. Default 90 s. */
  readyTimeoutMs?: number;
}

const SERVICE_ENTRIES = { api: "services/api/src/main.ts", builder: "services/builder/src/main.ts", router: "services/router/src/process.ts" } as const;

/**
 * `npm start` as it runs on a machine: scripts/start.ts with its api, builder and router
 * children (restarted by start.ts when they die), on free ports and a temporary data dir.
 * The database is this test file's own (DATABASE_URL), not an embedded Postgres: start.ts
 * then starts none, and tests skip initdb.
 */
export async function startPlatformProcesses(opts: PlatformProcessOptions = {}): Promise<PlatformProcesses> {
  const root = new URL("../..", import.meta.url).pathname;
  const data = await freshDatabase();
  const dir = await mkdtemp(join(tmpdir(), "berth-procs-"));
  const dataDir = join(dir, "data");
  const freePort = () =>
    new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject).listen(0, "127.0.0.1", () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
  const [apiPort, routerPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("BERTH_") && k !== "DATABASE_URL") env[k] = v;
  Object.assign(env, {
    DATABASE_URL: data.url,
    BERTH_DATA_DIR: dataDir,
    BERTH_API_PORT: String(apiPort),
    BERTH_ROUTER_PORT: String(routerPort),
    BERTH_ROUTER_ADMIN_PORT: String(adminPort),
    BERTH_LOCAL_ISOLATION: opts.isolation ?? "auto",
    BERTH_PASSWORD_MEMORY_KIB: "1024",
    BERTH_LOG_LEVEL: "warn",
  });
  const logFile = join(dir, "platform.log");
  const out = await open(logFile, "w");
  const start = spawn(process.execPath, [join(root, "scripts/start.ts")], { cwd: dir, env, stdio: ["ignore", out.fd, out.fd] });
  const exited = new Promise<void>((resolve) => start.once("exit", () => resolve()));
  const output = async (chars = 4000) => (await readFile(logFile, "utf8").catch(() => "")).slice(-chars);
  const apiUrl = `http://127.0.0.1:${apiPort}`;

  const children = async (): Promise<Array<{ pid: number; cmdline: string }>> => {
    const found: Array<{ pid: number; cmdline: string }> = [];
    for (const name of await readdir("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== start.pid) continue;
      found.push({ pid: Number(name), cmdline: (await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ") });
    }
    return found;
  };
  const childPid = async (service: keyof typeof SERVICE_ENTRIES) => (await children()).find((c) => c.cmdline.includes(SERVICE_ENTRIES[service]))?.pid;

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    const left = await children();
    if (start.exitCode === null && start.signalCode === null) {
      start.kill("SIGTERM");
      const timer = setTimeout(() => start.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    }
    // A start.ts that had to be killed leaves its children: stop them by pid (if still theirs).
    for (const c of left) {
      const now = (await readFile(`/proc/${c.pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
      if (now === c.cmdline) process.kill(c.pid, "SIGKILL");
    }
    await out.close();
    // Instances outlive the api by design; a runtime on the same state dir adopts and kills them.
    const leftovers = await createLocalRuntime({ stateDir: join(dataDir, "runtime"), clock: systemClock, logger: silentLogger, preferRunc: opts.isolation !== "process" });
    await leftovers.stopAll();
    await leftovers.close();
    await data.drop();
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
    for (const url of [`${apiUrl}/healthz`, `http://127.0.0.1:${adminPort}/healthz`]) {
      for (;;) {
        if (start.exitCode !== null || start.signalCode !== null) throw new Error(`scripts/start.ts exited (${start.exitCode ?? start.signalCode}) before ${url} answered`);
        const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`${url} did not answer within ${opts.readyTimeoutMs ?? 90_000} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    const log = await output();
    await close();
    throw new Error(`${(e as Error).message}\nplatform output:\n${log}`);
  }

  const tools = clientFor(apiUrl, dir);
  const routerUrl = `http://127.0.0.1:${routerPort}`;
  return {
    apiUrl,
    routerUrl,
    dataDir,
    startPid: start.pid!,
    childPid,
    output,
    ...tools,
    get: (host, path = "/", init = {}) => viaRouter(routerUrl, host, path, init),
    close,
  };
}

/** API calls, sign-up and git for a platform at `apiUrl`; git's HOME and new repositories go under `dir`. */
function clientFor(apiUrl: string, dir: string): Pick<TestPlatform, "call" | "user" | "git" | "repo" | "remote"> {
  const call: TestPlatform["call"] = async (method, path, o = {}) => {
    const headers: Record<string, string> = { Accept: "application/vnd.heroku+json; version=3", ...o.headers };
    if (o.token) headers.Authorization = `Bearer ${o.token}`;
    const init: RequestInit = { method, headers };
    if (o.body !== undefined) {
      init.body = JSON.stringify(o.body);
      headers["Content-Type"] = "application/json";
    }
    const res = await fetch(apiUrl + path, init);
    const text = await res.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      /* text */
    }
    return { status: res.status, body, headers: res.headers };
  };
  const git: TestPlatform["git"] = async (repo, args) => {
    try {
      const r = await run("git", args, { cwd: repo, env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", HOME: dir }, maxBuffer: 16 * 1024 * 1024 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof err.code === "number" ? err.code : 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
    }
  };
  let n = 0;
  return {
    call,
    git,
    async user() {
      const email = `dev${++n}-${Math.random().toString(36).slice(2, 7)}@example.test`;
      const password = "correct horse battery";
      const signup = await call("POST", "/users", { body: { email, password } });
      if (signup.status !== 201) throw new Error(`POST /users answered ${signup.status}: ${JSON.stringify(signup.body)}`);
      const auth = await call("POST", "/oauth/authorizations", { headers: { Authorization: `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}` }, body: {} });
      if (auth.status !== 201) throw new Error(`POST /oauth/authorizations answered ${auth.status}: ${JSON.stringify(auth.body)}`);
      const me = await call("GET", "/account", { token: auth.body.access_token.token });
      return { token: auth.body.access_token.token as string, email, id: me.body.id as string };
    },
    async repo(files) {
      const repo = await mkdtemp(join(dir, "src-"));
      for (const [name, content] of Object.entries(files)) {
        await mkdir(dirname(join(repo, name)), { recursive: true });
        await writeFile(join(repo, name), content);
      }
      await git(repo, ["init", "-q", "-b", "main"]);
      await git(repo, ["add", "-A"]);
      await git(repo, ["-c", "user.email=t@example.test", "-c", "user.name=t", "commit", "-qm", "initial"]);
      return repo;
    },
    remote(app, token) {
      return `${apiUrl.replace("http://", `http://git:${token}@`)}/${app}.git`;
    },
  };
}

/** What a request loop saw: answers by status and body, and the first failures. */
export interface LoadStats {
  requests: number;
  ok: number;
  failed: number;
  /** The first few failures (status and body, or the connection error). */
  failures: string[];
  /** Bodies of the 200 answers, with how often each came. */
  bodies: Map<string, number>;
  /** Why the loop ended: stop() was called, or it reached its request or time bound first. */
  endedBy: "stop" | "maxRequests" | "maxMs";
}

/**
 * GETs through the router with Host `host` from `workers` sequential loops until stop(), at
 * most `maxRequests` in all and for at most `maxMs`. `paceMs` between a worker's requests
 * caps the rate (not a synchronisation: the loop just lasts its whole window within its count).
 */
export function requestLoop(
  get: (host: string, path?: string) => Promise<{ status: number; text: string }>,
  host: string,
  opts: { workers?: number; maxRequests: number; maxMs: number; paceMs?: number; path?: string },
): { stats: LoadStats; stop(): Promise<LoadStats> } {
  const stats: LoadStats = { requests: 0, ok: 0, failed: 0, failures: [], bodies: new Map(), endedBy: "stop" };
  const deadline = Date.now() + opts.maxMs;
  let stopped = false;
  const worker = async () => {
    for (;;) {
      if (stopped) return;
      if (stats.requests >= opts.maxRequests) return void (stats.endedBy = "maxRequests");
      if (Date.now() >= deadline) return void (stats.endedBy = "maxMs");
      stats.requests++;
      try {
        const r = await get(host, opts.path ?? "/");
        if (r.status === 200) {
          stats.ok++;
          stats.bodies.set(r.text, (stats.bodies.get(r.text) ?? 0) + 1);
        } else {
          stats.failed++;
          if (stats.failures.length < 5) stats.failures.push(`${r.status} ${r.text.slice(0, 200)}`);
        }
      } catch (e) {
        stats.failed++;
        if (stats.failures.length < 5) stats.failures.push(`error: ${(e as Error).message}`);
      }
      if (opts.paceMs) await new Promise((r) => setTimeout(r, opts.paceMs));
    }
  };
  const done = Promise.all(Array.from({ length: opts.workers ?? 2 }, worker));
  return {
    stats,
    async stop() {
      stopped = true;
      await done;
      return stats;
    },
  };
}

/** Processes (pid and start time) whose environment holds every `NAME=value` in `env`: an instance's processes, found from the host. */
export async function processesWithEnv(env: Record<string, string>): Promise<Array<{ pid: number; startTime: string; comm: string }>> {
  const want = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const found: Array<{ pid: number; startTime: string; comm: string }> = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const environ = (await readFile(`/proc/${name}/environ`, "utf8").catch(() => "")).split("\0");
    if (!want.every((w) => environ.includes(w))) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    if (!stat) continue;
    const close = stat.lastIndexOf(")");
    found.push({ pid: Number(name), comm: stat.slice(stat.indexOf("(") + 1, close), startTime: stat.slice(close + 2).split(" ")[19]! });
  }
  return found;
}

/** Whether the process `p` (pid and start time, so a reused pid does not count) still exists. */
export async function processAlive(p: { pid: number; startTime: string }): Promise<boolean> {
  const stat = await readFile(`/proc/${p.pid}/stat`, "utf8").catch(() => "");
  if (!stat) return false;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // A zombie has exited: only its parent has not reaped it yet.
  return fields[19] === p.startTime && fields[0] !== "Z";
}
