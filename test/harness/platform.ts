/**
 * The whole platform in one test process, on real components: Postgres, the
 * Platform API with git and the deployer, the builder service, the local runtime
 * (runc where it works) and the router following the API's route feed.
 */
import { execFile } from "node:child_process";
import { request as httpRequest } from "node:http";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { serve, type ServerType } from "@hono/node-server";
import { silentLogger, systemClock, consoleLogger, type Logger } from "@berth/core";
import { pgEventBus } from "@berth/db";
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
    nodeBinary: process.execPath,
    internalUrl: () => apiUrl,
    internalToken,
    maxPushBytes: 50 * 1024 * 1024,
    bootTimeoutMs: opts.bootTimeoutMs ?? 15_000,
    graceMs: 2_000,
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
  let n = 0;
  const git: TestPlatform["git"] = async (repo, args) => {
    try {
      const r = await run("git", args, { cwd: repo, env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", HOME: dir }, maxBuffer: 16 * 1024 * 1024 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof err.code === "number" ? err.code : 1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
    }
  };
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
    call,
    async user() {
      const email = `dev${++n}-${Math.random().toString(36).slice(2, 7)}@example.test`;
      const password = "correct horse battery";
      await call("POST", "/users", { body: { email, password } });
      const auth = await call("POST", "/oauth/authorizations", { headers: { Authorization: `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}` }, body: {} });
      const me = await call("GET", "/account", { token: auth.body.access_token.token });
      return { token: auth.body.access_token.token as string, email, id: me.body.id as string };
    },
    get(host, path = "/", init = {}) {
      return viaRouter(routerUrl, host, path, init);
    },
    git,
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
