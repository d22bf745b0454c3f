import { sql } from "kysely";
import type { Clock } from "@berth/core";
import type { Db } from "@berth/db";

/**
 * The durable build queue: pending rows of `builds`, claimed with FOR UPDATE SKIP
 * LOCKED. Fairness: among pending builds, a team with fewer builds running goes
 * first, then the oldest; an app never runs two builds at once (its releases
 * would race). A claimed build carries a heartbeat; the reaper retries (once) or
 * fails builds whose builder stopped beating.
 */
export class BuildQueue {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly workerId: string;
  constructor(db: Db, clock: Clock, workerId: string) {
    this.#db = db;
    this.#clock = clock;
    this.workerId = workerId;
  }

  async claim(): Promise<{ id: string; app_id: string; team_id: string } | null> {
    return this.#db.transaction().execute(async (tx) => {
      const row = await sql<{ id: string; app_id: string; team_id: string }>`
        SELECT b.id, b.app_id, b.team_id
        FROM builds b
        LEFT JOIN (
          SELECT team_id, count(*) AS n FROM builds
          WHERE status = 'pending' AND claimed_by IS NOT NULL GROUP BY team_id
        ) running ON running.team_id = b.team_id
        WHERE b.status = 'pending' AND b.claimed_by IS NULL
          AND NOT EXISTS (SELECT 1 FROM builds x WHERE x.app_id = b.app_id AND x.status = 'pending' AND x.claimed_by IS NOT NULL)
        ORDER BY coalesce(running.n, 0), b.created_at
        LIMIT 1
        FOR UPDATE OF b SKIP LOCKED`.execute(tx);
      const b = row.rows[0];
      if (!b) return null;
      const now = new Date(this.#clock.now());
      await tx
        .updateTable("builds")
        .set((eb) => ({ claimed_by: this.workerId, heartbeat_at: now, started_at: now, attempts: eb("attempts", "+", 1), updated_at: now }))
        .where("id", "=", b.id)
        .execute();
      return b;
    });
  }

  async heartbeat(buildId: string): Promise<{ cancel: boolean }> {
    const row = await this.#db
      .updateTable("builds")
      .set({ heartbeat_at: new Date(this.#clock.now()) })
      .where("id", "=", buildId)
      .where("claimed_by", "=", this.workerId)
      .returning("cancel_requested")
      .executeTakeFirst();
    return { cancel: row?.cancel_requested ?? true };
  }

  async finish(buildId: string, result: { status: "succeeded" | "failed"; failure?: string; image?: unknown; processes?: unknown; buildpacks?: unknown }): Promise<boolean> {
    const now = new Date(this.#clock.now());
    const row = await this.#db
      .updateTable("builds")
      .set({
        status: result.status,
        failure: result.failure ?? null,
        image: result.image === undefined ? null : JSON.stringify(result.image),
        processes: result.processes === undefined ? null : JSON.stringify(result.processes),
        buildpacks: result.buildpacks === undefined ? null : JSON.stringify(result.buildpacks),
        finished_at: now,
        updated_at: now,
      })
      .where("id", "=", buildId)
      .where("claimed_by", "=", this.workerId)
      .where("status", "=", "pending")
      .returning("id")
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Pending builds nobody claimed that were asked to cancel: fail them without running. */
  async failCancelledUnclaimed(): Promise<string[]> {
    const rows = await this.#db
      .updateTable("builds")
      .set({ status: "failed", failure: "Build cancelled.", finished_at: new Date(this.#clock.now()) })
      .where("status", "=", "pending")
      .where("claimed_by", "is", null)
      .where("cancel_requested", "=", true)
      .returning(["id", "app_id"])
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * Builds whose builder stopped beating for `staleMs`: back to the queue when
   * tried fewer than `maxAttempts` times, failed otherwise. Returns what changed.
   */
  async reap(staleMs: number, maxAttempts: number): Promise<{ retried: string[]; failed: { id: string; app_id: string }[] }> {
    const cutoff = new Date(this.#clock.now() - staleMs);
    const retried = await this.#db
      .updateTable("builds")
      .set({ claimed_by: null, heartbeat_at: null })
      .where("status", "=", "pending")
      .where("claimed_by", "is not", null)
      .where("heartbeat_at", "<", cutoff)
      .where("attempts", "<", maxAttempts)
      .returning("id")
      .execute();
    const failed = await this.#db
      .updateTable("builds")
      .set({ status: "failed", failure: "The builder running this build stopped responding.", finished_at: new Date(this.#clock.now()) })
      .where("status", "=", "pending")
      .where("claimed_by", "is not", null)
      .where("heartbeat_at", "<", cutoff)
      .where("attempts", ">=", maxAttempts)
      .returning(["id", "app_id"])
      .execute();
    return { retried: retried.map((r) => r.id), failed };
  }
}
