/**
 * The whole platform in one test process, as test/harness/platform.ts wires it, but
 * on the real cluster: the Kubernetes runtime, and a builder that pushes every image
 * to the cluster's registry (127.0.0.1:5100). The router runs on this machine and
 * reaches pod IPs on the node's bridge.
 */
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { serve, type ServerType } from "@hono/node-server";
import { consoleLogger, silentLogger, systemClock, type Logger } from "@berth/core";
import { pgEventBus } from "@berth/db";
import { createLocalBlobStore } from "@berth/blobstore/local/index";
import { bwrapAvailable, bwrapExec, defaultOrder, spawnExec, trustEnv } from "@berth/buildpacks";
import { assemblePlatformApi, newKeySpec } from "@berth/api";
import { BuilderService, BuildQueue } from "@berth/builder";
import { RouteTable, controlPlaneReporter, controlPlaneWaker, followRoutes, startRouter, type RunningRouter } from "@berth/router";
import { createKubernetesRuntime, type KubernetesRuntime } from "../../packages/runtime/src/kubernetes/index.ts";
import { freshDatabase } from "../harness/db.ts";
import { viaRouter } from "../harness/platform.ts";
import { BASE_IMAGE, KUBECONFIG, REGISTRY } from "./cluster.ts";

const run = promisify(execFile);

export interface K8sPlatform {
  apiUrl: string;
  routerUrl: string;
  runtime: KubernetesRuntime;
  db: Awaited<ReturnType<typeof freshDatabase>>["db"];
  user(): Promise<{ token: string; email: string; id: string }>;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  get(host: string, path?: string): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }>;
  git(repo: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  repo(files: Record<string, string>): Promise<string>;
  remote(app: string, token: string): string;
  close(): Promise<void>;
}

export async function startK8sPlatform(opts: { namespacePrefix: string; log?: boolean }): Promise<K8sPlatform> {
  const logger: Logger = opts.log ? consoleLogger({ test: "k8s-platform" }) : silentLogger;
  const data = await freshDatabase();
  const dir = await mkdtemp(join(tmpdir(), "berth-k8s-platform-"));
  const events = await pgEventBus(data.url, logger);
  const blobs = createLocalBlobStore({ root: join(dir, "blobs") });
  const runtime = createKubernetesRuntime({
    kubeconfig: KUBECONFIG,
    namespacePrefix: opts.namespacePrefix,
    routerNamespace: "berth-system",
    registry: { host: REGISTRY, insecure: true },
    baseImage: BASE_IMAGE,
    clock: systemClock,
    logger: logger.child({ component: "runtime" }),
  });
  const internalToken = "test-internal-token-0123456789";
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
    bootTimeoutMs: 60_000,
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
      queue: new BuildQueue(data.db, systemClock, `k8s-test-${process.pid}`),
      sources: blobs,
      logger,
      clock: systemClock,
      layoutDir: join(dir, "images"),
      cacheDir: join(dir, "build-cache"),
      workDir: join(dir, "builds"),
      order: defaultOrder(),
      exec: (await bwrapAvailable()) ? bwrapExec({ passEnv: trustEnv(process.env) }) : spawnExec({ passEnv: trustEnv(process.env) }),
      // The Kubernetes runtime runs images from the registry only.
      registry: { host: REGISTRY, insecure: true },
      limits: { sourceBytes: 50 * 1024 * 1024, sourceEntries: 10_000, buildTimeoutMs: 120_000, logLines: 5000, imageBytes: 2 * 1024 ** 3 },
      heartbeatMs: 1000,
    },
    { concurrency: 2, pollMs: 1000, reapEveryMs: 5000, staleMs: 30_000, maxAttempts: 2 },
  );

  const waker = controlPlaneWaker(apiUrl, internalToken);
  const reporter = controlPlaneReporter(apiUrl, internalToken, logger);
  const table = new RouteTable();
  const feed = followRoutes({ apiUrl, token: internalToken, table, logger });
  const router: RunningRouter = await startRouter(
    { host: "127.0.0.1", port: 0, adminPort: 0, baseDomain: "localhost" },
    // No freeze: the Kubernetes runtime cannot, so idle apps go straight to zero.
    { table, waker: { wake: waker.wake, stop: waker.stop }, scaler: waker, logger, onAccessLog: reporter.accessLog, onColdStart: reporter.coldStart },
  );
  await feed.ready;

  const call: K8sPlatform["call"] = async (method, path, o = {}) => {
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
  const git: K8sPlatform["git"] = async (repo, args) => {
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
    routerUrl: router.url,
    runtime,
    db: data.db,
    call,
    async user() {
      const email = `dev${++n}-${Math.random().toString(36).slice(2, 7)}@example.test`;
      const password = "correct horse battery";
      await call("POST", "/users", { body: { email, password } });
      const auth = await call("POST", "/oauth/authorizations", { headers: { Authorization: `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}` }, body: {} });
      const me = await call("GET", "/account", { token: auth.body.access_token.token });
      return { token: auth.body.access_token.token as string, email, id: me.body.id as string };
    },
    get(host, path = "/") {
      return viaRouter(router.url, host, path);
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
      feed.close();
      await router.stop();
      await builder.stop();
      await new Promise<void>((r) => server.close(() => r()));
      platform.close();
      await runtime.close();
      await events.close();
      await data.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
