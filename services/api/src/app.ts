import { randomUUID } from "node:crypto";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { getCookie } from "hono/cookie";
import { BadRequest, Forbidden, RateLimited, TooLarge, Unauthorized, type Clock, type KeyRing, type Logger } from "@berth/core";
import type { Db } from "@berth/db";
import { errorResponse } from "./http/errors.ts";
import { RouteTable, type Env, type RouteDef } from "./http/routes.ts";
import type { Accounts } from "./domain/accounts.ts";
import type { WindowCounter } from "./auth/ratelimit.ts";
import type { ConfigStore } from "./domain/config.ts";
import type { PlatformHooks } from "./domain/hooks.ts";
import type { DynoSource } from "./domain/dynos.ts";
import type { SourceBlobs } from "./domain/sources.ts";
import type { LogHub } from "./platform/logs.ts";
import { sourceRoutes } from "./routes/sources.ts";
import { logRoutes } from "./routes/logs.ts";
import { compatRoutes } from "./routes/compat.ts";
import { CONSOLE_DIR, mountConsole } from "./console.ts";
import { accountRoutes } from "./routes/account.ts";
import { teamRoutes } from "./routes/teams.ts";
import { appRoutes } from "./routes/apps.ts";
import { configRoutes } from "./routes/config-vars.ts";
import { domainRoutes } from "./routes/domains.ts";
import { formationRoutes } from "./routes/formation.ts";
import { releaseRoutes } from "./routes/releases.ts";
import { buildRoutes } from "./routes/builds.ts";
import { dynoRoutes } from "./routes/dynos.ts";
import { openApiDocument } from "./openapi.ts";

export interface ApiSettings {
  signupOpen: boolean;
  /** Apps answer at <app>.<baseDomain>. */
  baseDomain: string;
  /** Public URL of this API (git remotes, source URLs). */
  publicUrl: string;
  maxBodyBytes: number;
  sessionTtlMs: number;
  /** Heroku's default is 4500 requests per hour per account. */
  requestsPerHour: number;
  secureCookies: boolean;
  /** Most dynos one team may run at once (the plan's quota). */
  dynoQuotaPerTeam: number;
  /** Hosts (https) a build may fetch source from besides Berth's own blob store. */
  allowedSourceHosts: string[];
  /** Origins whose /sources/<id> URLs are Berth's own (the API, and the S3 endpoint if any). */
  sourceOrigins: string[];
  /** Signs source and log-session URLs. */
  signingSecret: string;
  maxSourceBytes: number;
}

export interface ApiDeps {
  db: Db;
  clock: Clock;
  logger: Logger;
  accounts: Accounts;
  keyring: KeyRing;
  config: ConfigStore;
  requestLimiter: WindowCounter;
  hooks: PlatformHooks;
  dynos: DynoSource;
  sources: SourceBlobs;
  buildLogs: { follow(buildId: string): AsyncIterable<string> };
  logs: LogHub;
  settings: ApiSettings;
}


export const SESSION_COOKIE = "berth_session";
const REQUEST_ID = /^[A-Za-z0-9+=/_.-]{8,200}$/;

/** All routes of the Platform API, in one table (the authz matrix and OpenAPI read it). */
export function buildRouteTable(deps: ApiDeps): RouteTable {
  const t = new RouteTable();
  accountRoutes(t, deps);
  teamRoutes(t, deps);
  appRoutes(t, deps);
  configRoutes(t, deps);
  domainRoutes(t, deps);
  formationRoutes(t, deps);
  releaseRoutes(t, deps);
  buildRoutes(t, deps);
  dynoRoutes(t, deps);
  sourceRoutes(t, deps);
  logRoutes(t, deps);
  compatRoutes(t, deps);
  return t;
}

export function createApi(deps: ApiDeps): { app: Hono<Env>; routes: RouteTable } {
  const { logger, settings } = deps;
  const app = new Hono<Env>();
  const routes = buildRouteTable(deps);

  app.use(async (c, next) => {
    const incoming = c.req.header("X-Request-Id") ?? c.req.header("Request-Id");
    const id = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    c.set("requestId", id);
    c.header("Request-Id", id);
    const accept = c.req.header("Accept") ?? "";
    const version = /application\/vnd\.heroku\+json;\s*version=([^,;\s]+)/.exec(accept)?.[1];
    // Heroku's clients ask for variants of version 3 (3.sdk, 3.webhooks…): all get version 3.
    if (version !== undefined && version !== "3" && !version.startsWith("3.")) {
      throw new BadRequest(`API version ${version} is not supported; use Accept: application/vnd.heroku+json; version=3.`);
    }
    await next();
  });

  app.onError((err, c) => errorResponse(err, c, logger));
  app.notFound((c) => c.json({ id: "not_found", message: "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. GET vs. POST), and did you specify your intended version with the Accept header?" }, 404));

  const limit = bodyLimit({
    maxSize: settings.maxBodyBytes,
    onError: () => {
      throw new TooLarge(`Request body is larger than ${settings.maxBodyBytes} bytes.`);
    },
  });

  routes.mount(app, (def: RouteDef) => async (c) => {
    if (def.auth !== "none") await authenticate(c, def, deps);
    if (def.streamsBody) return def.handler(c);
    let res: Response | undefined;
    await limit(c, async () => {
      res = await def.handler(c);
    });
    return res!;
  });

  app.get("/openapi.json", (c) => c.json(openApiDocument(routes)));
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  mountConsole(app, CONSOLE_DIR);
  return { app, routes };
}

function basicCredentials(header: string): { user: string; password: string } | null {
  if (!/^basic /i.test(header)) return null;
  const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
  const i = decoded.indexOf(":");
  if (i < 0) return null;
  return { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/**
 * Sets userId, or throws Unauthorized. Tokens come as Bearer or as the Basic
 * password (git, netrc); `password` routes also take Basic email:password.
 * Cookie sessions must come from the console's own origin on unsafe methods.
 */
async function authenticate(c: Context<Env>, def: RouteDef, deps: ApiDeps): Promise<void> {
  const header = c.req.header("Authorization") ?? "";
  const address = clientAddress(c);
  let userId: string | null = null;
  if (/^bearer /i.test(header)) {
    userId = (await deps.accounts.userForToken(header.slice(7).trim()))?.userId ?? null;
    c.set("via", "token");
  } else if (header) {
    const basic = basicCredentials(header);
    if (!basic) throw new Unauthorized("Malformed Authorization header.");
    userId = (await deps.accounts.userForToken(basic.password))?.userId ?? null;
    c.set("via", "token");
    if (!userId && def.auth === "password" && basic.user.includes("@")) {
      userId = (await deps.accounts.login(basic.user, basic.password, address)).id;
      c.set("via", "password");
    }
  } else {
    const session = getCookie(c, SESSION_COOKIE);
    if (session) {
      userId = await deps.accounts.userForSession(session, deps.settings.sessionTtlMs);
      if (userId) {
        if (c.req.method !== "GET" && c.req.method !== "HEAD") checkOrigin(c, deps.settings.publicUrl);
        c.set("via", "session");
        c.set("sessionToken", session);
      }
    }
  }
  if (!userId) throw new Unauthorized(header || getCookie(c, SESSION_COOKIE) ? "Invalid credentials provided." : "Authentication required: pass an API token as a Bearer token.");
  c.set("userId", userId);
  if (deps.requestLimiter.blocked(userId)) {
    c.header("RateLimit-Remaining", "0");
    throw new RateLimited();
  }
  c.header("RateLimit-Remaining", String(deps.requestLimiter.hit(userId)));
}

/** CSRF defence for cookie sessions: the Origin (or Referer) must be this API's own. */
function checkOrigin(c: Context<Env>, publicUrl: string): void {
  const origin = c.req.header("Origin") ?? (c.req.header("Referer") ? new URL(c.req.header("Referer")!).origin : undefined);
  const own = new URL(c.req.url).origin;
  if (!origin || (origin !== own && origin !== new URL(publicUrl).origin)) {
    throw new Forbidden("Cross-site request refused: session requests must come from the console.");
  }
}

export function clientAddress(c: Context): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? "unknown";
}
