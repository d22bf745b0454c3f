import { Invalid, NotFound, QuotaExceeded, type Clock } from "@berth/core";
import type { Db } from "@berth/db";
import { DYNO_SIZES } from "@berth/runtime";
import { lockApp } from "./access.ts";

/** Most instances of one process type; a team plan's quota is checked on top. */
export const MAX_QUANTITY = 100;

export function normalizeSize(size: unknown): string {
  if (typeof size !== "string") throw new Invalid("size must be a string.");
  const s = size.toLowerCase();
  if (!(s in DYNO_SIZES)) throw new Invalid(`Unknown dyno size ${JSON.stringify(size.slice(0, 40))}; use one of ${Object.keys(DYNO_SIZES).join(", ")}.`);
  return s;
}

export function listFormation(db: Db, appId: string) {
  return db.selectFrom("formations").selectAll().where("app_id", "=", appId).orderBy("type").execute();
}

export interface FormationUpdate {
  type: string;
  quantity?: number | undefined;
  size?: string | undefined;
}

/** Applies all updates or none. Unknown process types are NotFound, like Heroku. */
export async function updateFormation(db: Db, appId: string, updates: FormationUpdate[], clock: Clock, teamQuota: number) {
  return db.transaction().execute(async (tx) => {
    await lockApp(appId).execute(tx);
    const rows = [];
    for (const u of updates) {
      if (u.quantity !== undefined && (!Number.isInteger(u.quantity) || u.quantity < 0 || u.quantity > MAX_QUANTITY)) {
        throw new Invalid(`quantity must be a whole number from 0 to ${MAX_QUANTITY}.`);
      }
      const set: Record<string, unknown> = { updated_at: new Date(clock.now()) };
      if (u.quantity !== undefined) set.quantity = u.quantity;
      if (u.size !== undefined) set.size = normalizeSize(u.size);
      const row = await tx.updateTable("formations").set(set).where("app_id", "=", appId).where("type", "=", u.type).returningAll().executeTakeFirst();
      if (!row) throw new NotFound("formation");
      rows.push(row);
    }
    const total = await tx
      .selectFrom("formations")
      .innerJoin("apps", "apps.id", "formations.app_id")
      .select((eb) => eb.fn.sum<number>("formations.quantity").as("n"))
      .where("apps.team_id", "=", tx.selectFrom("apps").select("team_id").where("id", "=", appId))
      .executeTakeFirst();
    if (Number(total?.n ?? 0) > teamQuota) throw new QuotaExceeded(`Your team may run at most ${teamQuota} dynos at once.`);
    return rows;
  });
}

/** After a build: make the formation match the build's process types (new web starts at 1, others at 0). */
export async function syncFormation(db: Db, appId: string, processes: { type: string; command: string }[], clock: Clock) {
  await db.transaction().execute(async (tx) => {
    await lockApp(appId).execute(tx);
    const existing = new Map((await tx.selectFrom("formations").selectAll().where("app_id", "=", appId).execute()).map((f) => [f.type, f]));
    for (const p of processes) {
      if (p.type === "release") continue;
      const f = existing.get(p.type);
      if (f) {
        if (f.command !== p.command) await tx.updateTable("formations").set({ command: p.command, updated_at: new Date(clock.now()) }).where("id", "=", f.id).execute();
      } else {
        await tx.insertInto("formations").values({ app_id: appId, type: p.type, command: p.command, quantity: p.type === "web" ? 1 : 0 }).execute();
      }
    }
    const types = new Set(processes.map((p) => p.type));
    for (const [type, f] of existing) if (!types.has(type)) await tx.deleteFrom("formations").where("id", "=", f.id).execute();
  });
}
