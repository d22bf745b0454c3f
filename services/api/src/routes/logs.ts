import { createHmac } from "node:crypto";
import { stream } from "hono/streaming";
import { z } from "zod";
import { Forbidden } from "@berth/core";
import type { ApiDeps } from "../app.ts";
import { readJson } from "../http/json.ts";
import { iso } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { appFor } from "../domain/access.ts";
import { constantTimeEqual } from "../auth/tokens.ts";
import { formatLogLine } from "../platform/logs.ts";
import { AsyncQueue } from "../http/queue.ts";

const sessionBody = z.object({
  lines: z.number().int().min(0).max(1500).optional(),
  tail: z.boolean().optional(),
  dyno: z.string().max(40).nullable().optional(),
  source: z.string().max(20).nullable().optional(),
});

interface SessionClaims {
  app: string;
  lines: number;
  tail: boolean;
  dyno?: string;
  source?: string;
  exp: number;
}

function sign(secret: string, claims: SessionClaims): string {
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  return `${body}.${createHmac("sha256", secret).update(`log-session\n${body}`).digest("base64url")}`;
}

function verify(secret: string, token: string, now: number): SessionClaims | null {
  const [body, sig] = token.split(".");
  if (!body || !sig) return null;
  if (!constantTimeEqual(sig, createHmac("sha256", secret).update(`log-session\n${body}`).digest("base64url"))) return null;
  const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as SessionClaims;
  return claims.exp * 1000 >= now ? claims : null;
}

export function logRoutes(t: RouteTable, deps: ApiDeps): void {
  t.post("/apps/:app/log-sessions", {
    auth: "user",
    scope: { app: "read" },
    summary: "A log session: logplex_url streams recent lines, then new ones with tail",
    status: 201,
    async handler(c) {
      const app = await appFor(deps.db, c.get("userId"), c.req.param("app")!, "read");
      const body = await readJson(c, sessionBody);
      const now = deps.clock.now();
      const claims: SessionClaims = {
        app: app.id,
        lines: body.lines ?? 100,
        tail: body.tail ?? false,
        ...(body.dyno ? { dyno: body.dyno } : {}),
        ...(body.source ? { source: body.source } : {}),
        exp: Math.floor(now / 1000) + 3600,
      };
      const token = sign(deps.settings.signingSecret, claims);
      return c.json({ id: token.slice(-36), logplex_url: `${deps.settings.publicUrl}/log-sessions/${token}`, created_at: iso(new Date(now)), updated_at: iso(new Date(now)) }, 201);
    },
  });

  t.get("/log-sessions/:token", {
    auth: "none",
    summary: "Stream a log session (signed URL from POST /apps/{app}/log-sessions)",
    streamsBody: true,
    handler(c) {
    const claims = verify(deps.settings.signingSecret, c.req.param("token")!, deps.clock.now());
    if (!claims) throw new Forbidden("This log session is invalid or has expired.");
    const filter = { dyno: claims.dyno, source: claims.source };
    // Heroku's CLI reads log sessions as server-sent events; curl and older clients as plain text.
    const sse = (c.req.header("Accept") ?? "").includes("text/event-stream");
    c.header("Content-Type", sse ? "text/event-stream" : "text/plain; charset=utf-8");
    c.header("Cache-Control", "no-cache");
    let id = 0;
    const frame = (line: string) => (sse ? `id: ${++id}\ndata: ${line}\n\n` : line + "\n");
    return stream(c, async (s) => {
      for (const l of deps.logs.recent(claims.app, claims.lines, filter)) await s.write(frame(formatLogLine(l)));
      if (!claims.tail) return;
      const queue = new AsyncQueue<string>();
      const off = deps.logs.subscribe(claims.app, filter, (l) => queue.push(formatLogLine(l)));
      s.onAbort(() => queue.close());
      try {
        for await (const next of queue.drain(15_000)) {
          if ("item" in next) await s.write(frame(next.item));
          else if (sse) await s.write(": keep-alive\n\n");
        }
      } finally {
        off();
      }
    });
    },
  });
}
