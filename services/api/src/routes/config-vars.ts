import { z } from "zod";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor } from "../domain/access.ts";
import { appendRelease, latestBuiltRelease } from "../domain/releases.ts";

export function configRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, config, hooks } = deps;

  t.get("/apps/:app/config-vars", {
    auth: "user",
    scope: { app: "read" },
    summary: "Config vars",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      return c.json(await config.read(app.id, app.config_version));
    },
  });

  t.patch("/apps/:app/config-vars", {
    auth: "user",
    scope: { app: "write" },
    summary: "Set config vars; null unsets. Re-releases the current build when one exists.",
    async handler(c) {
      const userId = c.get("userId");
      const app = await appFor(db, userId, c.req.param("app")!, "write");
      const changes = await readJson(c, z.record(z.string(), z.string().max(32 * 1024).nullable()));
      const result = await config.patch(app.id, changes);
      if (result.changed.length > 0) {
        const built = await latestBuiltRelease(db, app.id);
        if (built) {
          const set = result.changed.filter((k) => k in result.vars);
          const unset = result.changed.filter((k) => !(k in result.vars));
          const description = [set.length ? `Set ${set.join(", ")} config vars` : "", unset.length ? `Remove ${unset.join(", ")} config vars` : ""].filter(Boolean).join("; ");
          const rel = await appendRelease(db, { appId: app.id, buildId: built.build_id, configVersion: result.version, description, userId });
          hooks.releaseCreated(app.id, rel.id);
        }
      }
      return c.json(result.vars);
    },
  });
}
