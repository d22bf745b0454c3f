import type { RouteTable } from "./http/routes.ts";

const PARAM_NAMES: Record<string, string> = {
  app: "app_id_or_name",
  team: "team_id_or_name",
  member: "team_member_email_or_id",
  domain: "domain_id_or_hostname",
  type: "formation_type",
  release: "release_id_or_version",
  build: "build_id",
  dyno: "dyno_id_or_name",
  id: "oauth_authorization_id",
  user: "account_email_or_id_or_self",
};

/** `/apps/:app` → `/apps/{app_id_or_name}` */
export function openApiPath(honoPath: string): string {
  return honoPath.replace(/:([a-z_]+)/g, (_, p: string) => `{${PARAM_NAMES[p] ?? p}}`);
}

/**
 * An OpenAPI 3.1 description generated from the route table itself, so it cannot
 * drift from the routes that exist (a test compares it with the mounted routes).
 */
export function openApiDocument(routes: RouteTable) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes.withOrganizationAliases()) {
    const path = openApiPath(r.path);
    const params = [...r.path.matchAll(/:([a-z_]+)/g)].map((m) => ({ name: PARAM_NAMES[m[1]!] ?? m[1], in: "path", required: true, schema: { type: "string" } }));
    const status = String(r.status ?? 200);
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      summary: r.summary,
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, "").replace(/[^a-zA-Z0-9]+(.)?/g, (_, ch: string | undefined) => (ch ?? "").toUpperCase())}`,
      ...(params.length ? { parameters: params } : {}),
      security: r.auth === "none" ? [] : r.auth === "password" ? [{ basic: [] }, { bearer: [] }] : [{ bearer: [] }, { session: [] }],
      ...(r.scope ? { "x-berth-scope": r.scope } : {}),
      responses: {
        [status]: { description: "Success", content: { "application/json": {} } },
        default: { description: "Error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
      },
    };
  }
  return {
    openapi: "3.1.0",
    info: { title: "Berth Platform API", version: "3", description: "Compatible with the Heroku Platform API v3 (Accept: application/vnd.heroku+json; version=3)." },
    paths,
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer" },
        basic: { type: "http", scheme: "basic" },
        session: { type: "apiKey", in: "cookie", name: "berth_session" },
      },
      schemas: {
        Error: { type: "object", required: ["id", "message"], properties: { id: { type: "string" }, message: { type: "string" } } },
      },
    },
  };
}
