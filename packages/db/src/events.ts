import pg from "pg";
import type { Logger } from "@berth/core";

/**
 * Cross-process events over Postgres LISTEN/NOTIFY: the builder tells the API a
 * build finished, and build log lines wake their streams. Payloads are small JSON;
 * the database row is always the truth, an event only says "look again".
 */
export type PlatformEvent =
  | { kind: "build.log"; buildId: string; seq: number }
  | { kind: "build.finished"; buildId: string; appId: string; status: "succeeded" | "failed" }
  | { kind: "build.queued"; buildId: string }
  | { kind: "release.settled"; appId: string; releaseId: string; status: "succeeded" | "failed" };

export const EVENTS_CHANNEL = "berth_events";

export interface EventBus {
  publish(e: PlatformEvent): Promise<void>;
  subscribe(fn: (e: PlatformEvent) => void): () => void;
  close(): Promise<void>;
}

/** A dedicated connection that LISTENs and reconnects with backoff when it drops. */
export async function pgEventBus(url: string, logger: Logger): Promise<EventBus> {
  const listeners = new Set<(e: PlatformEvent) => void>();
  const publisher = new pg.Pool({ connectionString: url, max: 2 });
  publisher.on("error", () => {});
  let client: pg.Client | undefined;
  let closed = false;
  let retry = 100;

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: url });
    c.on("notification", (msg) => {
      if (msg.channel !== EVENTS_CHANNEL || !msg.payload) return;
      let e: PlatformEvent;
      try {
        e = JSON.parse(msg.payload) as PlatformEvent;
      } catch {
        return;
      }
      for (const l of listeners) l(e);
    });
    c.on("error", (err) => {
      logger.warn("event listener connection lost", { err: err.message });
      client = undefined;
      c.end().catch(() => {});
      if (!closed) setTimeout(() => void connect().catch(() => {}), (retry = Math.min(retry * 2, 5000))).unref();
    });
    await c.connect();
    await c.query(`LISTEN ${EVENTS_CHANNEL}`);
    retry = 100;
    client = c;
  };
  await connect();

  return {
    async publish(e) {
      await publisher.query("SELECT pg_notify($1, $2)", [EVENTS_CHANNEL, JSON.stringify(e)]);
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      closed = true;
      await client?.end().catch(() => {});
      await publisher.end();
    },
  };
}
