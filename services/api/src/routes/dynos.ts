import { NotFound } from "@berth/core";
import type { Instance } from "@berth/runtime";
import type { ApiDeps } from "../app.ts";
import { paginate } from "../http/range.ts";
import { iso } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor } from "../domain/access.ts";
import { listFormation } from "../domain/formation.ts";

/** Heroku's dyno states: up, starting, crashed, down, idle. A frozen dyno shows as idle. */
const HEROKU_STATE: Record<Instance["state"], string> = { starting: "starting", up: "up", crashed: "crashed", frozen: "idle", stopping: "down", down: "down" };

export function dynoRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, hooks } = deps;

  const dynosOf = async (appId: string, appName: string) => {
    const [instances, formation, releases] = await Promise.all([
      deps.dynos.list(appId),
      listFormation(db, appId),
      db.selectFrom("releases").select(["id", "version"]).where("app_id", "=", appId).execute(),
    ]);
    const commands = new Map(formation.map((f) => [f.type, f.command]));
    const releaseIds = new Map(releases.map((r) => [r.version, r.id]));
    return instances.map((i) => ({
      id: `${appId}.${i.name}`,
      name: i.name,
      type: i.type,
      state: HEROKU_STATE[i.state],
      size: i.size,
      command: commands.get(i.type) ?? "",
      attach_url: null,
      app: { id: appId, name: appName },
      release: { id: releaseIds.get(i.release) ?? null, version: i.release },
      // Berth: restarts and why the last run ended.
      restarts: i.restarts,
      last_exit: i.lastExit ?? null,
      created_at: iso(i.startedAt),
      updated_at: iso(i.startedAt),
    }));
  };

  t.get("/apps/:app/dynos", {
    auth: "user",
    scope: { app: "read" },
    summary: "Running dynos",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      return paginate(c, await dynosOf(app.id, app.name), { fields: ["name", "id"], defaultField: "name" });
    },
  });

  t.get("/apps/:app/cold-starts", {
    auth: "user",
    scope: { app: "read" },
    summary: "Berth: the app's recent wakes from zero or frozen, newest first, with their durations",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const rows = await db.selectFrom("cold_starts").select(["id", "tier", "duration_ms", "created_at"]).where("app_id", "=", app.id).orderBy("id", "desc").limit(100).execute();
      return c.json(rows.map((r) => ({ id: String(r.id), tier: r.tier, duration_ms: r.duration_ms, created_at: iso(r.created_at) })));
    },
  });

  t.get("/apps/:app/dynos/:dyno", {
    auth: "user",
    scope: { app: "read" },
    summary: "One dyno",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const key = c.req.param("dyno")!;
      const d = (await dynosOf(app.id, app.name)).find((x) => x.name === key || x.id === key);
      if (!d) throw new NotFound("dyno");
      return c.json(d);
    },
  });

  t.delete("/apps/:app/dynos", {
    auth: "user",
    scope: { app: "write" },
    summary: "Restart all dynos",
    status: 202,
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      await hooks.restart(app.id);
      return c.json({}, 202);
    },
  });

  t.delete("/apps/:app/dynos/:dyno", {
    auth: "user",
    scope: { app: "write" },
    summary: "Restart one dyno (web.1) or one process type (web)",
    status: 202,
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      const which = c.req.param("dyno")!;
      if (!/^[a-zA-Z0-9_-]{1,30}(\.\d{1,4})?$/.test(which)) throw new NotFound("dyno");
      await hooks.restart(app.id, which);
      return c.json({}, 202);
    },
  });
}
