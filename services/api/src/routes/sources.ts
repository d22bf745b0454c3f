import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { Context } from "hono";
import { stream } from "hono/streaming";
import { Forbidden, NotFound, TooLarge } from "@berth/core";
import type { ApiDeps } from "../app.ts";
import type { Env, RouteTable } from "../http/routes.ts";
import { limitBytes } from "../http/limits.ts";
import { checkSourceSignature, signSourceUrl, sourceKey, SOURCE_URL_TTL_SEC } from "../domain/sources.ts";
import { isUuid } from "../domain/access.ts";

export function sourceRoutes(t: RouteTable, deps: ApiDeps): void {
  t.post("/sources", {
    auth: "user",
    summary: "A place to upload a source tarball: put_url to PUT it, get_url to build it",
    status: 201,
    async handler(c) {
      const id = randomUUID();
      const key = sourceKey(id);
      await deps.db.insertInto("sources").values({ id, user_id: c.get("userId"), blob_key: key }).execute();
      const expires = deps.clock.now() + SOURCE_URL_TTL_SEC * 1000;
      const put = (await deps.sources.signedUrl(key, "PUT", SOURCE_URL_TTL_SEC)) ?? signSourceUrl(deps.settings.publicUrl, deps.settings.signingSecret, id, "PUT", expires);
      const get = (await deps.sources.signedUrl(key, "GET", SOURCE_URL_TTL_SEC)) ?? signSourceUrl(deps.settings.publicUrl, deps.settings.signingSecret, id, "GET", expires);
      return c.json({ source_blob: { get_url: get, put_url: put } }, 201);
    },
  });

  const { settings } = deps;
  // Signed, token-less endpoints: the URLs POST /sources hands out, and build output streams.
  const blob = async (c: Context<Env>) => {
    const id = c.req.param("id")!;
    const method = c.req.method as "GET" | "PUT";
    if (!isUuid(id) || c.req.query("method") !== method || !checkSourceSignature(settings.signingSecret, id, method, c.req.query("expires"), c.req.query("sig"), deps.clock.now())) {
      throw new Forbidden("This source URL is invalid or has expired; ask POST /sources for a new one.");
    }
    const row = await deps.db.selectFrom("sources").select("blob_key").where("id", "=", id).executeTakeFirst();
    if (!row) throw new NotFound("source");
    if (method === "GET") {
      const body = await deps.sources.get(row.blob_key);
      return new Response(Readable.toWeb(body) as ReadableStream, { headers: { "Content-Type": "application/octet-stream" } });
    }
    const declared = Number(c.req.header("Content-Length") ?? "0");
    if (declared > settings.maxSourceBytes) throw new TooLarge(`Sources may be at most ${settings.maxSourceBytes >> 20} MiB.`);
    await deps.sources.put(row.blob_key, limitBytes(Readable.fromWeb(c.req.raw.body! as import("node:stream/web").ReadableStream), settings.maxSourceBytes, "Sources"));
    return c.body(null, 200);
  };
  t.get("/sources/:id/blob", { auth: "none", summary: "Download a source (signed URL from POST /sources)", streamsBody: true, handler: blob });
  t.put("/sources/:id/blob", { auth: "none", summary: "Upload a source (signed URL from POST /sources)", streamsBody: true, handler: blob });

  t.get("/builds/:id/output", {
    auth: "none",
    summary: "A build's output: live while it runs, then replayed (capability URL: the build id)",
    streamsBody: true,
    async handler(c) {
    const id = c.req.param("id")!;
    if (!isUuid(id)) throw new NotFound("build");
    const build = await deps.db.selectFrom("builds").select("id").where("id", "=", id).executeTakeFirst();
    if (!build) throw new NotFound("build");
    c.header("Content-Type", "text/plain; charset=utf-8");
      return stream(c, async (s) => {
        for await (const line of deps.buildLogs.follow(id)) await s.write(line + "\n");
      });
    },
  });
}

