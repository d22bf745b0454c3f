import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { Unauthorized, type Logger } from "@berth/core";
import type { Db } from "@berth/db";
import type { Env } from "../http/routes.ts";
import { readJson } from "../http/json.ts";
import { constantTimeEqual } from "../auth/tokens.ts";
import { webRoutes, type RouteFeed, type FeedEvent } from "./routefeed.ts";
import type { Scaling } from "./scaling.ts";
import type { LogHub } from "./logs.ts";
import { isUuid } from "../domain/access.ts";
import { AsyncQueue } from "../http/queue.ts";

export interface InternalDeps {
  db: Db;
  feed: RouteFeed;
  scaling: Scaling;
  logs: LogHub;
  logger: Logger;
  /** Shared secret of the platform's own processes (router, hooks). */
  internalToken: string;
}

const logBatch = z.array(z.object({ appId: z.string(), at: z.string(), source: z.string().max(20), dyno: z.string().max(40), text: z.string().max(10_000) })).max(1000);

/**
 * Endpoints for the platform's own processes, never for users: the router's
 * route feed, its wake/freeze/stop/scale calls, and its access log lines.
 */
export function mountInternal(app: Hono<Env>, deps: InternalDeps): void {
  app.use("/internal/*", async (c, next) => {
    if (c.req.path.startsWith("/internal/git/")) return next();
    if (!constantTimeEqual(c.req.header("Authorization") ?? "", `Bearer ${deps.internalToken}`)) throw new Unauthorized("Internal token required.");
    await next();
  });

  app.get("/internal/routes/stream", (c) =>
    streamSSE(c, async (s) => {
      const queue = new AsyncQueue<FeedEvent>();
      const off = deps.feed.subscribe((e) => queue.push(e));
      s.onAbort(() => queue.close());
      try {
        await s.writeSSE({ event: "snapshot", data: JSON.stringify(await deps.feed.snapshot()) });
        for await (const next of queue.drain(15_000)) {
          if (!("item" in next)) await s.write(": keep-alive\n\n");
          else if (next.item.kind === "upsert") await s.writeSSE({ event: "upsert", data: JSON.stringify(next.item.route) });
          else await s.writeSSE({ event: "remove", data: JSON.stringify({ appId: next.item.appId }) });
        }
      } finally {
        off();
      }
    }),
  );

  const appId = (id: string | undefined) => {
    if (!id || !isUuid(id)) throw new Unauthorized("bad app id");
    return id;
  };
  app.post("/internal/apps/:id/wake", async (c) => {
    // The instances as they are now: the router takes them at once instead of waiting for the feed.
    const instances = await deps.scaling.wake(appId(c.req.param("id")));
    return c.json({ ok: true, instances: webRoutes(instances) });
  });
  app.post("/internal/apps/:id/freeze", async (c) => {
    await deps.scaling.freeze(appId(c.req.param("id")));
    return c.json({ ok: true });
  });
  app.post("/internal/apps/:id/stop", async (c) => {
    await deps.scaling.scaleWeb(appId(c.req.param("id")), 0);
    return c.json({ ok: true });
  });
  app.post("/internal/apps/:id/scale", async (c) => {
    const body = await readJson(c, z.object({ instances: z.number().int().min(0).max(100) }));
    await deps.scaling.scaleWeb(appId(c.req.param("id")), body.instances);
    return c.json({ ok: true });
  });
  app.post("/internal/apps/:id/cold-starts", async (c) => {
    const body = await readJson(c, z.object({ ms: z.number().min(0).max(3_600_000), tier: z.enum(["frozen", "zero"]) }));
    await deps.db.insertInto("cold_starts").values({ app_id: appId(c.req.param("id")), tier: body.tier, duration_ms: Math.round(body.ms) }).execute();
    return c.json({ ok: true });
  });
  app.post("/internal/logs", async (c) => {
    for (const l of await readJson(c, logBatch)) deps.logs.push({ ...l, at: new Date(l.at) });
    return c.json({ ok: true });
  });
}
