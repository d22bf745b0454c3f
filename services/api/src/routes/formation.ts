import { z } from "zod";
import { NotFound } from "@berth/core";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { paginate } from "../http/range.ts";
import { formationShape } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor } from "../domain/access.ts";
import { listFormation, updateFormation } from "../domain/formation.ts";

/** The Heroku CLI sends quantities as strings ("2"); both forms are accepted. */
const quantity = z.union([z.number().int(), z.string().regex(/^\d{1,4}$/, "must be a whole number").transform(Number)]);
const one = z.object({ quantity: quantity.optional(), size: z.string().max(40).optional() });
const batch = z.object({ updates: z.array(one.extend({ type: z.string().max(30) })).min(1).max(50) });

export function formationRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, clock, hooks } = deps;

  t.get("/apps/:app/formation", {
    auth: "user",
    scope: { app: "read" },
    summary: "Process types with quantity and size",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const rows = (await listFormation(db, app.id)).map((f) => formationShape(f, { id: app.id, name: app.name }));
      return paginate(c, rows, { fields: ["type", "id"], defaultField: "type" });
    },
  });

  t.get("/apps/:app/formation/:type", {
    auth: "user",
    scope: { app: "read" },
    summary: "One process type",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const f = (await listFormation(db, app.id)).find((r) => r.type === c.req.param("type") || r.id === c.req.param("type"));
      if (!f) throw new NotFound("formation");
      return c.json(formationShape(f, { id: app.id, name: app.name }));
    },
  });

  t.patch("/apps/:app/formation", {
    auth: "user",
    scope: { app: "write" },
    summary: "Scale several process types at once",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      const body = await readJson(c, batch);
      const rows = await updateFormation(db, app.id, body.updates, clock, deps.settings.dynoQuotaPerTeam);
      hooks.formationChanged(app.id);
      return c.json(rows.map((f) => formationShape(f, { id: app.id, name: app.name })));
    },
  });

  t.patch("/apps/:app/formation/:type", {
    auth: "user",
    scope: { app: "write" },
    summary: "Scale one process type",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      const body = await readJson(c, one);
      const [row] = await updateFormation(db, app.id, [{ type: c.req.param("type")!, ...body }], clock, deps.settings.dynoQuotaPerTeam);
      hooks.formationChanged(app.id);
      return c.json(formationShape(row!, { id: app.id, name: app.name }));
    },
  });
}
