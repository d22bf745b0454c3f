import { z } from "zod";
import { Forbidden, NotFound } from "@berth/core";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { paginate } from "../http/range.ts";
import { appShape } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor, personalTeamId, teamFor, type AppRecord } from "../domain/access.ts";
import { createApp, deleteApp, listApps, transferApp, updateApp } from "../domain/apps.ts";

export function webScheme(deps: ApiDeps): string {
  return deps.settings.baseDomain.endsWith("localhost") ? "http" : "https";
}

const createBody = z.object({
  name: z.string().max(100).optional(),
  region: z.string().max(50).optional(),
  stack: z.string().max(50).optional(),
  team: z.string().max(100).optional(),
  organization: z.string().max(100).optional(),
  personal: z.boolean().optional(),
  locked: z.boolean().optional(),
});

const patchBody = z.object({
  name: z.string().max(100).optional(),
  maintenance: z.boolean().optional(),
  build_stack: z.string().max(50).optional(),
  min_instances: z.number().int().min(0).max(100).optional(),
  max_instances: z.number().int().min(1).max(100).optional(),
  target_concurrency: z.number().int().min(1).max(10_000).optional(),
  idle_freeze_seconds: z.number().int().min(1).max(86_400).optional(),
  idle_stop_seconds: z.number().int().min(1).max(7 * 86_400).optional(),
  request_timeout_seconds: z.number().int().min(1).max(300).optional(),
  health_check_path: z.string().max(200).nullable().optional(),
});

export function appRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, clock, hooks } = deps;
  const shape = (a: AppRecord) => appShape(a, { ...deps.settings, webScheme: webScheme(deps) });

  t.get("/apps", {
    auth: "user",
    summary: "Apps you can see: personal and your teams'",
    async handler(c) {
      const apps = (await listApps(db, c.get("userId"))).map(shape);
      return paginate(c, apps, { fields: ["id", "name", "updated_at"], defaultField: "id" });
    },
  });

  t.get("/users/:user/apps", {
    auth: "user",
    summary: "Your personal apps (`~` means you)",
    async handler(c) {
      const who = c.req.param("user")!;
      const me = await deps.accounts.getUser(c.get("userId"));
      if (who !== "~" && who !== me.id && who.toLowerCase() !== me.email.toLowerCase()) throw new NotFound("user");
      const apps = (await listApps(db, me.id, { personalOnly: true })).map(shape);
      return paginate(c, apps, { fields: ["id", "name"], defaultField: "id" });
    },
  });

  const create = async (userId: string, body: z.infer<typeof createBody>) => {
    const teamName = body.team ?? body.organization;
    const teamId = teamName && !body.personal ? (await teamFor(db, userId, teamName, "write")).id : await personalTeamId(db, userId);
    return createApp(db, { userId, teamId, name: body.name, stack: body.stack, region: body.region });
  };

  t.post("/apps", {
    auth: "user",
    summary: "Create an app (personal, or in `team`)",
    status: 201,
    async handler(c) {
      const app = await create(c.get("userId"), await readJson(c, createBody));
      hooks.appChanged(app.id);
      return c.json(shape(app), 201);
    },
  });

  t.post("/teams/apps", {
    auth: "user",
    scope: { team: "write" },
    summary: "Create an app in a team",
    status: 201,
    async handler(c) {
      const body = await readJson(c, createBody);
      if (!body.team && !body.organization && !body.personal) throw new NotFound("team");
      const app = await create(c.get("userId"), body);
      hooks.appChanged(app.id);
      return c.json(shape(app), 201);
    },
  });

  t.get("/apps/:app", {
    auth: "user",
    scope: { app: "read" },
    summary: "App info",
    async handler(c) {
      return c.json(shape(await appFor(db, c.get("userId"), c.req.param("app")!, "read")));
    },
  });

  t.get("/teams/apps/:app", {
    auth: "user",
    scope: { app: "read" },
    summary: "App info (team path)",
    async handler(c) {
      return c.json(shape(await appFor(db, c.get("userId"), c.req.param("app")!, "read")));
    },
  });

  t.patch("/apps/:app", {
    auth: "user",
    scope: { app: "write" },
    summary: "Update an app: name, maintenance, scaling settings",
    async handler(c) {
      const userId = c.get("userId");
      const app = await appFor(db, userId, c.req.param("app")!, "write");
      const body = await readJson(c, patchBody);
      if (body.name !== undefined && body.name !== app.name) await appFor(db, userId, app.id, "admin");
      const updated = await updateApp(db, app, body, clock, userId);
      hooks.appChanged(app.id);
      return c.json(shape(updated));
    },
  });

  t.patch("/teams/apps/:app", {
    auth: "user",
    scope: { app: "admin" },
    summary: "Transfer an app: `owner` is a team name or your own email (personal)",
    async handler(c) {
      const userId = c.get("userId");
      const app = await appFor(db, userId, c.req.param("app")!, "admin");
      const body = await readJson(c, z.object({ owner: z.string().max(320), locked: z.boolean().optional() }));
      const me = await deps.accounts.getUser(userId);
      let target: string;
      if (body.owner.includes("@")) {
        if (body.owner.toLowerCase() !== me.email.toLowerCase()) throw new Forbidden("Apps can only be transferred to your own account or a team you belong to.");
        target = await personalTeamId(db, userId);
      } else {
        target = (await teamFor(db, userId, body.owner, "write")).id;
      }
      const moved = await transferApp(db, app, target, clock, userId);
      hooks.appChanged(app.id);
      return c.json(shape(moved));
    },
  });

  t.delete("/apps/:app", {
    auth: "user",
    scope: { app: "admin" },
    summary: "Delete an app and everything it runs",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "admin");
      await deleteApp(db, app);
      hooks.appDeleted(app.id);
      return c.json(shape(app));
    },
  });
}
