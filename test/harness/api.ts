import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { pgEventBus } from "@berth/db";
import { createLocalBlobStore } from "@berth/blobstore/local/index";
import { ManualClock, silentLogger, systemClock, type Clock } from "@berth/core";
import type { Instance } from "@berth/runtime";
import { assembleApi, newKeySpec, type ApiSettings, type PlatformHooks } from "@berth/api";
import { freshDatabase } from "./db.ts";

/** Records what the API asked of the platform; API tests assert on it. A test double of an internal port. */
export class RecordingHooks implements PlatformHooks {
  calls: { hook: string; appId: string; arg?: string }[] = [];
  appChanged(appId: string) {
    this.calls.push({ hook: "appChanged", appId });
  }
  releaseCreated(appId: string, releaseId: string) {
    this.calls.push({ hook: "releaseCreated", appId, arg: releaseId });
  }
  formationChanged(appId: string) {
    this.calls.push({ hook: "formationChanged", appId });
  }
  async restart(appId: string, which?: string) {
    this.calls.push({ hook: "restart", appId, ...(which ? { arg: which } : {}) });
  }
  appDeleted(appId: string) {
    this.calls.push({ hook: "appDeleted", appId });
  }
  buildQueued(buildId: string) {
    this.calls.push({ hook: "buildQueued", appId: "", arg: buildId });
  }
}

export interface TestApi {
  url: string;
  db: Awaited<ReturnType<typeof freshDatabase>>["db"];
  hooks: RecordingHooks;
  instances: Map<string, Instance[]>;
  clock: Clock;
  assembled: ReturnType<typeof assembleApi>;
  /** Signs a user up and returns an API token. */
  user(email?: string): Promise<{ token: string; email: string; id: string }>;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

let seq = 0;

export async function startTestApi(opts: { settings?: Partial<ApiSettings>; clock?: Clock | ManualClock; configKeys?: string } = {}): Promise<TestApi> {
  const data = await freshDatabase();
  const hooks = new RecordingHooks();
  const instances = new Map<string, Instance[]>();
  const clock = opts.clock ?? systemClock;
  let url = "http://127.0.0.1:0";
  const settings: ApiSettings = {
    signupOpen: true,
    baseDomain: "localhost",
    get publicUrl() {
      return url;
    },
    maxBodyBytes: 64 * 1024,
    sessionTtlMs: 3_600_000,
    requestsPerHour: 4500,
    secureCookies: false,
    dynoQuotaPerTeam: 20,
    allowedSourceHosts: ["github.com"],
    sourceOrigins: [],
    signingSecret: "test-signing-secret-0123456789",
    maxSourceBytes: 1024 * 1024,
    ...opts.settings,
  };
  const blobDir = await mkdtemp(join(tmpdir(), "berth-api-blobs-"));
  const events = await pgEventBus(data.url, silentLogger);
  const assembled = assembleApi({
    db: data.db,
    clock,
    logger: silentLogger,
    configKeys: opts.configKeys ?? newKeySpec("k1"),
    hooks,
    dynos: { list: async (appId) => instances.get(appId) ?? [] },
    sources: createLocalBlobStore({ root: blobDir }),
    events,
    settings,
    passwordCost: { memoryKiB: 1024, iterations: 1 },
    loginLimits: { perAccount: 5, perAddress: 50, windowMs: 15 * 60_000 },
  });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: assembled.app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const call: TestApi["call"] = async (method, path, o = {}) => {
    const headers: Record<string, string> = { Accept: "application/vnd.heroku+json; version=3", ...o.headers };
    if (o.token) headers.Authorization = `Bearer ${o.token}`;
    let body: string | undefined;
    if (o.body !== undefined) {
      body = typeof o.body === "string" ? o.body : JSON.stringify(o.body);
      headers["Content-Type"] ??= "application/json";
    }
    const res = await fetch(url + path, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  };

  return {
    get url() {
      return url;
    },
    db: data.db,
    hooks,
    instances,
    clock,
    assembled,
    call,
    async user(email = `user${++seq}-${Math.random().toString(36).slice(2, 8)}@example.test`) {
      const password = "correct horse battery";
      const signup = await call("POST", "/users", { body: { email, password } });
      if (signup.status !== 201) throw new Error(`sign-up failed: ${JSON.stringify(signup.body)}`);
      const auth = await call("POST", "/oauth/authorizations", { headers: { Authorization: `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}` }, body: {} });
      if (auth.status !== 201) throw new Error(`token failed: ${JSON.stringify(auth.body)}`);
      return { token: auth.body.access_token.token as string, email, id: signup.body.id as string };
    },
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await events.close();
      await data.drop();
      await rm(blobDir, { recursive: true, force: true });
    },
  };
}
