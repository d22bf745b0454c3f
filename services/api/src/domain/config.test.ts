import { afterAll, beforeAll, expect, test } from "vitest";
import { newKeySpec, parseKeyRing, systemClock } from "@berth/core";
import { freshDatabase } from "../../../../test/harness/db.ts";
import { ConfigStore } from "./config.ts";

let h: Awaited<ReturnType<typeof freshDatabase>>;
let appId: string;
beforeAll(async () => {
  h = await freshDatabase();
  const user = await h.db.insertInto("users").values({ email: "k@example.test", password_hash: "x" }).returning("id").executeTakeFirstOrThrow();
  const team = await h.db.insertInto("teams").values({ name: "keys" }).returning("id").executeTakeFirstOrThrow();
  appId = (await h.db.insertInto("apps").values({ name: "keyed-app", team_id: team.id, owner_id: user.id }).returning("id").executeTakeFirstOrThrow()).id;
});
afterAll(async () => h?.drop());

test("rotation: a new current key re-encrypts every snapshot; old snapshots stay readable; the old key can then go", async () => {
  const k1 = newKeySpec("k1");
  const v1 = new ConfigStore(h.db, parseKeyRing(k1), systemClock);
  await v1.patch(appId, { A: "1" });
  await v1.patch(appId, { B: "2" });
  const k2 = newKeySpec("k2");
  const both = new ConfigStore(h.db, parseKeyRing(`${k2},${k1}`), systemClock);
  expect(await both.read(appId, 2)).toEqual({ A: "1", B: "2" });
  expect(await both.rotate()).toBe(2);
  const keys = await h.db.selectFrom("config_versions").select("key_id").where("app_id", "=", appId).execute();
  expect(keys.map((k) => k.key_id)).toEqual(["k2", "k2"]);
  const onlyNew = new ConfigStore(h.db, parseKeyRing(k2), systemClock);
  expect(await onlyNew.read(appId, 1)).toEqual({ A: "1" });
  expect(await onlyNew.read(appId, 2)).toEqual({ A: "1", B: "2" });
  expect(await both.rotate()).toBe(0);
});
