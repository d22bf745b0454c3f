import { z } from "zod";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { paginate } from "../http/range.ts";
import { iso } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor } from "../domain/access.ts";
import { Invalid } from "@berth/core";
import { ownSourceId } from "../domain/sources.ts";
import { checkSourceUrl, getBuild, listBuilds, queueBuild, requestCancel } from "../domain/builds.ts";

type BuildRow = Awaited<ReturnType<typeof listBuilds>>[number];

export function buildShape(b: BuildRow, app: { id: string; name: string }, publicUrl: string, releaseId: string | null = null) {
  return {
    id: b.id,
    app,
    status: b.status,
    source_blob: { url: b.source_url, version: b.source_version, checksum: b.source_checksum, version_description: null },
    buildpacks: (b.buildpacks as { url: string; name: string }[] | null) ?? null,
    output_stream_url: `${publicUrl}/builds/${b.id}/output`,
    release: releaseId ? { id: releaseId } : null,
    slug: b.status === "succeeded" ? { id: b.id } : null,
    stack: "berth-24",
    user: { id: b.user_id },
    // Berth: why a build failed.
    failure: b.failure,
    created_at: iso(b.created_at),
    updated_at: iso(b.updated_at),
  };
}

const createBody = z.object({
  source_blob: z.object({ url: z.string().max(2048), version: z.string().max(200).nullable().optional(), checksum: z.string().max(200).nullable().optional() }),
  buildpacks: z.array(z.object({ url: z.string().max(500).optional(), name: z.string().max(200).optional() })).max(10).optional(),
});

export function buildRoutes(t: RouteTable, deps: ApiDeps): void {
  const { db, hooks, settings } = deps;

  t.get("/apps/:app/builds", {
    auth: "user",
    scope: { app: "read" },
    summary: "Builds",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const rows = (await listBuilds(db, app.id)).map((b) => buildShape(b, { id: app.id, name: app.name }, settings.publicUrl));
      return paginate(c, rows, { fields: ["created_at", "id"], defaultField: "created_at" });
    },
  });

  t.get("/apps/:app/builds/:build", {
    auth: "user",
    scope: { app: "read" },
    summary: "One build",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "read");
      const b = await getBuild(db, app.id, c.req.param("build")!);
      const rel = await db.selectFrom("releases").select("id").where("build_id", "=", b.id).orderBy("version").limit(1).executeTakeFirst();
      return c.json(buildShape(b, { id: app.id, name: app.name }, settings.publicUrl, rel?.id ?? null));
    },
  });

  t.post("/apps/:app/builds", {
    auth: "user",
    scope: { app: "write" },
    summary: "Build a source tarball (from POST /sources)",
    status: 201,
    async handler(c) {
      const userId = c.get("userId");
      const app = await appFor(db, userId, c.req.param("app")!, "write");
      const body = await readJson(c, createBody);
      const url = checkSourceUrl(body.source_blob.url, [settings.publicUrl, ...settings.sourceOrigins], settings.allowedSourceHosts);
      const sourceId = ownSourceId(url, [settings.publicUrl, ...settings.sourceOrigins]);
      const source = sourceId ? await db.selectFrom("sources").select("blob_key").where("id", "=", sourceId).executeTakeFirst() : undefined;
      if (sourceId && !source) throw new Invalid("source_blob.url points at a source that does not exist; create one with POST /sources.");
      const b = await queueBuild(db, { appId: app.id, teamId: app.team_id, userId, url, blobKey: source?.blob_key, version: body.source_blob.version ?? undefined, checksum: body.source_blob.checksum ?? undefined });
      hooks.buildQueued(b.id);
      return c.json(buildShape(b, { id: app.id, name: app.name }, settings.publicUrl), 201);
    },
  });

  t.delete("/apps/:app/builds/:build", {
    auth: "user",
    scope: { app: "write" },
    summary: "Cancel a pending or running build",
    async handler(c) {
      const app = await appFor(db, c.get("userId"), c.req.param("app")!, "write");
      const b = await requestCancel(db, app.id, c.req.param("build")!);
      return c.json(buildShape(b, { id: app.id, name: app.name }, settings.publicUrl));
    },
  });
}
