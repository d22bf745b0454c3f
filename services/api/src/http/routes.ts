import type { Context, Hono } from "hono";
import type { Level } from "../domain/access.ts";

export type Method = "GET" | "POST" | "PATCH" | "PUT" | "DELETE";

/**
 * How a route authenticates:
 * - none: anyone (sign-up, health)
 * - password: HTTP Basic email:password, or any user credential (creating tokens)
 * - user: an API token (Bearer, or Basic with the token as password) or a console session
 */
export type AuthMode = "none" | "password" | "user";

export interface Env {
  Variables: {
    requestId: string;
    userId: string;
    /** How the caller authenticated, for routes that care (logout). */
    via: "token" | "session" | "password" | "none";
    sessionToken?: string;
  };
}

export type Handler = (c: Context<Env>) => Promise<Response> | Response;

/** One route, with what the authorization matrix and the OpenAPI document need to know about it. */
export interface RouteDef {
  method: Method;
  /** Hono path with `:app`, `:team`, … parameters. */
  path: string;
  auth: AuthMode;
  /** The membership the route needs, checked by its handler through access.ts. */
  scope?: { app: Level } | { team: Level };
  summary: string;
  /** Success status, for the OpenAPI document. */
  status?: number;
  /** The route reads a large body itself (uploads) and enforces its own limit. */
  streamsBody?: boolean;
  handler: Handler;
}

export class RouteTable {
  readonly routes: RouteDef[] = [];
  add(def: RouteDef): void {
    this.routes.push(def);
  }
  get(path: string, rest: Omit<RouteDef, "method" | "path">) {
    this.add({ method: "GET", path, ...rest });
  }
  post(path: string, rest: Omit<RouteDef, "method" | "path">) {
    this.add({ method: "POST", path, ...rest });
  }
  patch(path: string, rest: Omit<RouteDef, "method" | "path">) {
    this.add({ method: "PATCH", path, ...rest });
  }
  put(path: string, rest: Omit<RouteDef, "method" | "path">) {
    this.add({ method: "PUT", path, ...rest });
  }
  delete(path: string, rest: Omit<RouteDef, "method" | "path">) {
    this.add({ method: "DELETE", path, ...rest });
  }
  /** Heroku calls teams "organizations" in older clients: every /teams path answers under /organizations too. */
  withOrganizationAliases(): RouteDef[] {
    const aliases = this.routes
      .filter((r) => r.path.startsWith("/teams"))
      .map((r) => ({ ...r, path: r.path.replace(/^\/teams/, "/organizations") }));
    return [...this.routes, ...aliases];
  }
  mount(app: Hono<Env>, wrap: (def: RouteDef) => Handler): void {
    for (const def of this.withOrganizationAliases()) {
      app.on(def.method, def.path, wrap(def));
    }
  }
}
