import { z } from "zod";
import { Invalid } from "@berth/core";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { paginate } from "../http/range.ts";
import { iso } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor } from "../domain/access.ts";
import { currentRelease, getRelease, listReleases, rollback, type ReleaseRow } from "../domain/releases.ts";

export function releaseShape(r: ReleaseRow, app: { id: string; name: string }, currentId: string | undefined) {
  return {
    id: r.id,
    version: r.version,
    description: r.description,
    status: r.status,
    current: r.id === currentId,
    app,
    user: r.user_id ? { id: r.user_id, email: r.user_email } : null,
    slug: r.build_id ? { id: r.build_id } : null,
    addon_plan_names: [],
    output_stream_url: null,
    // Berth: why a release failed, when it did.
    failure_reason: r.status === "failed" ? r.reason : null,
    created_at: iso(r.created_at),
    updated_at: iso(r.settled_at ?? r.created_at),
  };
}

export function releaseRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, config, hooks } = deps;

  t.get("/apps/:app/releases", {
    auth: "user",
    scope: { app: "read" },
    summary: "Releases, oldest first (Range: version ..; order=desc for newest first)",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const cur = await currentRelease(db, app.id);
      const rows = (await listReleases(db, app.id)).map((r) => releaseShape(r, { id: app.id, name: app.name }, cur?.id));
      return paginate(c, rows, { fields: ["version", "id"], defaultField: "version" });
    },
  });

  t.get("/apps/:app/releases/:release", {
    auth: "user",
    scope: { app: "read" },
    summary: "One release, by id or version",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const cur = await currentRelease(db, app.id);
      return c.json(releaseShape(await getRelease(db, app.id, c.req.param("release")!), { id: app.id, name: app.name }, cur?.id));
    },
  });

  t.post("/apps/:app/releases", {
    auth: "user",
    scope: { app: "write" },
    summary: "Roll back: {release: id or version} makes a new release of that build and config",
    status: 201,
    async handler(c) {
      const userId = c.get("userId");
      const app = await appFor(db, userId, c.req.param("app")!, "write");
      const body = await readJson(c, z.object({ release: z.union([z.string().max(64), z.number().int()]) }));
      const target = await getRelease(db, app.id, String(body.release));
      if (!target.build_id) throw new Invalid(`v${target.version} has no build to roll back to.`);
      if (target.status === "failed") throw new Invalid(`v${target.version} failed; roll back to a release that succeeded.`);
      const rel = await rollback(db, config, app.id, target, userId);
      hooks.releaseCreated(app.id, rel.id);
      const cur = await currentRelease(db, app.id);
      return c.json(releaseShape(await getRelease(db, app.id, rel.id), { id: app.id, name: app.name }, cur?.id), 201);
    },
  });
}
