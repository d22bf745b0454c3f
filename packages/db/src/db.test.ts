import { afterAll, beforeAll, expect, test } from "vitest";
import { sql } from "kysely";
import { freshDatabase } from "../../../test/harness/db.ts";
import { isUniqueViolation } from "./db.ts";

let h: Awaited<ReturnType<typeof freshDatabase>>;
beforeAll(async () => {
  h = await freshDatabase();
});
afterAll(async () => h?.drop());

test("the template is migrated: every table of the data model exists", async () => {
  const rows = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`.execute(h.db);
  const names = rows.rows.map((r) => r.table_name);
  for (const t of ["users", "teams", "team_members", "apps", "config_versions", "builds", "releases", "release_outcomes", "domains", "formations"]) {
    expect(names).toContain(t);
  }
});

test("emails are unique regardless of case", async () => {
  await h.db.insertInto("users").values({ email: "A@x.test", password_hash: "x" }).execute();
  const err = await h.db
    .insertInto("users")
    .values({ email: "a@X.test", password_hash: "y" })
    .execute()
    .catch((e: unknown) => e);
  expect(isUniqueViolation(err, "users_email_key")).toBe(true);
});

test("importing @berth/db installs no process exit hooks (they would force exit code 0)", async () => {
  const { execFileSync } = await import("node:child_process");
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", "await import('@berth/db'); console.log(process.listenerCount('beforeExit') + process.listenerCount('SIGTERM'))"], { cwd: process.cwd(), encoding: "utf8" });
  expect(out.trim()).toBe("0");
});
