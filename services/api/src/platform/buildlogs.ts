import type { Db, EventBus } from "@berth/db";

/**
 * Reads a build's output from the build_logs ledger: everything written so far,
 * then new lines as the builder writes them (woken by events, with a slow poll as
 * a safety net should an event be missed), until the build has finished.
 */
export class BuildLogs {
  readonly #db: Db;
  readonly #events: EventBus;
  readonly #pollMs: number;
  constructor(db: Db, events: EventBus, pollMs = 1000) {
    this.#db = db;
    this.#events = events;
    this.#pollMs = pollMs;
  }

  async *follow(buildId: string, signal?: AbortSignal): AsyncGenerator<string> {
    let next = 0;
    let wake: (() => void) | undefined;
    const off = this.#events.subscribe((e) => {
      if ((e.kind === "build.log" || e.kind === "build.finished") && e.buildId === buildId) wake?.();
    });
    try {
      for (;;) {
        const rows = await this.#db.selectFrom("build_logs").select(["seq", "line"]).where("build_id", "=", buildId).where("seq", ">=", next).orderBy("seq").limit(1000).execute();
        for (const r of rows) {
          yield r.line;
          next = r.seq + 1;
        }
        if (rows.length === 1000) continue;
        const b = await this.#db.selectFrom("builds").select("status").where("id", "=", buildId).executeTakeFirst();
        if (!b || b.status !== "pending") {
          // Lines written just before the status changed.
          const tail = await this.#db.selectFrom("build_logs").select(["seq", "line"]).where("build_id", "=", buildId).where("seq", ">=", next).orderBy("seq").execute();
          for (const r of tail) yield r.line;
          return;
        }
        if (signal?.aborted) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, this.#pollMs);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      off();
    }
  }
}
