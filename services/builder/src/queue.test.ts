import { afterAll, beforeAll, beforeEach, expect, test } from "vitest";
import { ManualClock } from "@berth/core";
import { freshDatabase } from "../../../test/harness/db.ts";
import { BuildQueue } from "./queue.ts";

let h: Awaited<ReturnType<typeof freshDatabase>>;
let userId: string;
const teams: Record<string, string> = {};
const apps: Record<string, { id: string; team: string }> = {};
const clock = new ManualClock(Date.parse("2026-11-24T00:00:00Z"));

beforeAll(async () => {
  h = await freshDatabase();
  userId = (await h.db.insertInto("users").values({ email: "q@example.test", password_hash: "x" }).returning("id").executeTakeFirstOrThrow()).id;
  for (const t of ["busy", "quiet"]) teams[t] = (await h.db.insertInto("teams").values({ name: t }).returning("id").executeTakeFirstOrThrow()).id;
  for (const [name, team] of [["busy-1", "busy"], ["busy-2", "busy"], ["busy-3", "busy"], ["quiet-1", "quiet"]] as const) {
    apps[name] = { id: (await h.db.insertInto("apps").values({ name, team_id: teams[team]!, owner_id: userId }).returning("id").executeTakeFirstOrThrow()).id, team };
  }
});
afterAll(async () => h?.drop());
beforeEach(async () => {
  await h.db.deleteFrom("builds").execute();
});

async function queue(app: string, at: number) {
  const a = apps[app]!;
  return (
    await h.db
      .insertInto("builds")
      .values({ app_id: a.id, team_id: teams[a.team]!, user_id: userId, source_url: "https://github.com/x.tgz", created_at: new Date(Date.parse("2026-11-24T00:00:00Z") + at) })
      .returning("id")
      .executeTakeFirstOrThrow()
  ).id;
}

test("a team with a build running waits behind a team with none, whatever the order of arrival", async () => {
  const first = await queue("busy-1", 0);
  await queue("busy-2", 1);
  await queue("busy-3", 2);
  const quiet = await queue("quiet-1", 3);
  const q = new BuildQueue(h.db, clock, "w1");
  expect((await q.claim())?.id).toBe(first);
  // busy has one running; quiet has none: quiet goes next although it came last.
  expect((await q.claim())?.id).toBe(quiet);
});

test("two builders never claim the same build, and an app never runs two builds at once", async () => {
  const a = await queue("busy-1", 0);
  await queue("busy-1", 1);
  const b = await queue("busy-2", 2);
  const [x, y, z] = await Promise.all([new BuildQueue(h.db, clock, "w1").claim(), new BuildQueue(h.db, clock, "w2").claim(), new BuildQueue(h.db, clock, "w3").claim()]);
  const claimed = [x, y, z].filter(Boolean).map((r) => r!.id);
  expect(new Set(claimed).size).toBe(claimed.length);
  expect(claimed.sort()).toEqual([a, b].sort());
});

test("a builder that stops beating: its build is retried once, then failed", async () => {
  const id = await queue("quiet-1", 0);
  const dead = new BuildQueue(h.db, clock, "dead");
  expect((await dead.claim())?.id).toBe(id);
  clock.advance(10_000);
  expect(await dead.reap(30_000, 2)).toEqual({ retried: [], failed: [] });
  clock.advance(25_000);
  expect((await dead.reap(30_000, 2)).retried).toEqual([id]);
  const second = new BuildQueue(h.db, clock, "also-dead");
  expect((await second.claim())?.id).toBe(id);
  clock.advance(31_000);
  const reaped = await second.reap(30_000, 2);
  expect(reaped.failed.map((f) => f.id)).toEqual([id]);
  const row = await h.db.selectFrom("builds").select(["status", "failure", "attempts"]).where("id", "=", id).executeTakeFirstOrThrow();
  expect(row).toMatchObject({ status: "failed", attempts: 2 });
  expect(row.failure).toMatch(/stopped responding/);
  // A late finish from the dead builder changes nothing.
  expect(await second.finish(id, { status: "succeeded" })).toBe(false);
});

test("cancel: a heartbeat reports it to the running builder; unclaimed cancelled builds fail without running", async () => {
  const running = await queue("busy-1", 0);
  const waiting = await queue("busy-1", 1);
  const q = new BuildQueue(h.db, clock, "w");
  expect((await q.claim())?.id).toBe(running);
  await h.db.updateTable("builds").set({ cancel_requested: true }).execute();
  expect(await q.heartbeat(running)).toEqual({ cancel: true });
  expect(await q.failCancelledUnclaimed()).toEqual([waiting]);
  expect((await h.db.selectFrom("builds").select("failure").where("id", "=", waiting).executeTakeFirstOrThrow()).failure).toBe("Build cancelled.");
});
