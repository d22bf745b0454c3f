import { z } from "zod";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { paginate } from "../http/range.ts";
import { domainShape, iso } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor, type AppRecord } from "../domain/access.ts";
import { addDomain, getDomain, listDomains, removeDomain, validateHostname } from "../domain/domains.ts";

export function domainRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, hooks, settings } = deps;
  const ref = (a: AppRecord) => ({ id: a.id, name: a.name });
  /** The default domain is derived from the app's name, so renames can never leave it stale. */
  const defaultDomain = (a: AppRecord) => ({
    ...domainShape({ id: a.id, hostname: `${a.name}.${settings.baseDomain}`, kind: "heroku", cname: null, status: "succeeded", created_at: a.created_at, updated_at: a.updated_at }, ref(a)),
    created_at: iso(a.created_at),
  });

  t.get("/apps/:app/domains", {
    auth: "user",
    scope: { app: "read" },
    summary: "Domains: the default one and custom ones",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const rows = [defaultDomain(app), ...(await listDomains(db, app.id)).map((d) => domainShape(d, ref(app)))];
      return paginate(c, rows, { fields: ["hostname", "id"], defaultField: "hostname" });
    },
  });

  t.get("/apps/:app/domains/:domain", {
    auth: "user",
    scope: { app: "read" },
    summary: "One domain",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const key = c.req.param("domain")!;
      if (key === app.id || key === `${app.name}.${settings.baseDomain}`) return c.json(defaultDomain(app));
      return c.json(domainShape(await getDomain(db, app.id, key), ref(app)));
    },
  });

  t.post("/apps/:app/domains", {
    auth: "user",
    scope: { app: "write" },
    summary: "Add a custom domain",
    status: 201,
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      const body = await readJson(c, z.object({ hostname: z.string().max(300), sni_endpoint: z.string().nullable().optional() }));
      const d = await addDomain(db, app.id, validateHostname(body.hostname, settings.baseDomain), `${app.name}.${settings.baseDomain}`);
      hooks.appChanged(app.id);
      return c.json(domainShape(d, ref(app)), 201);
    },
  });

  t.delete("/apps/:app/domains/:domain", {
    auth: "user",
    scope: { app: "write" },
    summary: "Remove a custom domain",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      const d = await removeDomain(db, app.id, c.req.param("domain")!);
      hooks.appChanged(app.id);
      return c.json(domainShape(d, ref(app)));
    },
  });
}
