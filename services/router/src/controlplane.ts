import type { Logger } from "@berth/core";
import type { AccessLogEntry } from "./accesslog.ts";
import type { ColdTier, Scaler, Waker } from "./autoscaler.ts";
import type { AppRoute, InstanceRoute, RouteTable } from "./routes.ts";

/**
 * The router's link to the control plane: it follows the API's route feed (a
 * server-sent event stream: a snapshot, then upserts and removes), reconnecting
 * with backoff. While disconnected it keeps serving the table it has, so an API
 * restart does not take apps down; a reconnect's snapshot replaces the table.
 */
export function followRoutes(opts: { apiUrl: string; token: string; table: RouteTable; logger: Logger }): { ready: Promise<void>; close(): void } {
  let closed = false;
  let abort: AbortController | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  let backoff = 100;

  const apply = (event: string, data: string) => {
    if (event === "snapshot") {
      opts.table.replace(JSON.parse(data) as AppRoute[]);
      markReady();
    } else if (event === "upsert") opts.table.upsert(JSON.parse(data) as AppRoute);
    else if (event === "remove") opts.table.remove((JSON.parse(data) as { appId: string }).appId);
  };

  const loop = async () => {
    while (!closed) {
      abort = new AbortController();
      try {
        const res = await fetch(`${opts.apiUrl}/internal/routes/stream`, { headers: { Authorization: `Bearer ${opts.token}`, Accept: "text/event-stream" }, signal: abort.signal });
        if (!res.ok || !res.body) throw new Error(`route feed answered ${res.status}`);
        backoff = 100;
        const decoder = new TextDecoder();
        let buf = "";
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(chunk, { stream: true });
          let sep: number;
          while ((sep = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, sep);
            buf = buf.slice(sep + 2);
            let event = "message";
            const data: string[] = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) {
              try {
                apply(event, data.join("\n"));
              } catch (err) {
                opts.logger.warn("bad route feed event", { event, err });
              }
            }
          }
        }
        throw new Error("route feed ended");
      } catch (err) {
        if (closed) return;
        opts.logger.warn("route feed disconnected; serving the last table", { err: err instanceof Error ? err.message : String(err), retry_ms: backoff });
        await new Promise((r) => setTimeout(r, backoff).unref());
        // Capped at 1 s: until it reconnects, the router does not see deploys made by the
        // restarted API, and a reconnect attempt to a local API costs next to nothing.
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  };
  void loop();
  return {
    ready,
    close() {
      closed = true;
      abort?.abort();
    },
  };
}

/**
 * Waker and Scaler over the API's internal endpoints. A wake answers with the app's
 * web instances as they are after the wake; `table` (when given) takes them at once,
 * so held requests go out without waiting for the same change to come round the route
 * feed (which follows, with the same instances).
 */
export function controlPlaneWaker(apiUrl: string, token: string, table?: Pick<RouteTable, "get" | "setInstances">): Waker & Scaler {
  const post = async (path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${apiUrl}${path}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
    return res.json();
  };
  return {
    async wake(appId) {
      const before = table?.get(appId);
      const answer = (await post(`/internal/apps/${appId}/wake`)) as { instances?: InstanceRoute[] };
      // Only over the route the wake started from: if the feed changed it meanwhile, that
      // change may be newer than this answer (a deploy), and the feed has the last word.
      if (table && before && table.get(appId) === before && Array.isArray(answer.instances)) table.setInstances(appId, answer.instances);
    },
    freeze: async (appId) => void (await post(`/internal/apps/${appId}/freeze`)),
    stop: async (appId) => void (await post(`/internal/apps/${appId}/stop`)),
    scale: async (appId, n) => void (await post(`/internal/apps/${appId}/scale`, { instances: n })),
  };
}

/** Ships access lines and cold starts to the API in small batches; drops lines if the API is away. */
export function controlPlaneReporter(apiUrl: string, token: string, logger: Logger) {
  let batch: { appId: string; at: string; source: string; dyno: string; text: string }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
  const flush = () => {
    timer = undefined;
    const lines = batch;
    batch = [];
    if (lines.length === 0) return;
    fetch(`${apiUrl}/internal/logs`, { method: "POST", headers, body: JSON.stringify(lines) }).catch(() => {});
  };
  return {
    accessLog(line: string, e: AccessLogEntry) {
      if (!e.appId) return;
      batch.push({ appId: e.appId, at: new Date().toISOString(), source: "heroku", dyno: "router", text: line });
      if (batch.length >= 500) flush();
      else timer ??= setTimeout(flush, 200);
    },
    coldStart(appId: string, ms: number, tier: ColdTier) {
      fetch(`${apiUrl}/internal/apps/${appId}/cold-starts`, { method: "POST", headers, body: JSON.stringify({ ms, tier }) }).catch((err: unknown) => logger.warn("cold start not recorded", { err }));
    },
    flush,
  };
}
