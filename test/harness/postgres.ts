import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { migrate, openDb, spawnEmbeddedPostgres } from "@berth/db";

export const TEMPLATE_DB = "berth_template";

/** One real Postgres for the test run, with a migrated template database. */
export async function startTestPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "berth-pg-"));
  const pg = await spawnEmbeddedPostgres({ dir, unsafeFast: true });
  const admin = openDb(pg.url, { max: 1 });
  const { sql } = await import("kysely");
  await sql.raw(`CREATE DATABASE ${TEMPLATE_DB}`).execute(admin);
  await admin.destroy();
  const tpl = openDb(pg.url.replace(/\/postgres$/, `/${TEMPLATE_DB}`), { max: 1 });
  await migrate(tpl);
  await tpl.destroy();
  return {
    url: pg.url,
    async stop() {
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
