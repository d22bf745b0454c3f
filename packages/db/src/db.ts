import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Database } from "./schema.ts";

export type Db = Kysely<Database>;

/** Opens a pooled connection to Postgres. The caller owns it and must `destroy()` it. */
export function openDb(url: string, opts: { max?: number; onIdleError?: (e: Error) => void } = {}): Db {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10 });
  // An idle pooled connection can be closed by the server (restart, admin
  // termination); the pool replaces it on next use. Without a listener the
  // error event would crash the process.
  pool.on("error", opts.onIdleError ?? (() => {}));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Postgres unique_violation, for mapping to Conflict at the call site that knows the meaning. */
export function isUniqueViolation(e: unknown, constraint?: string): boolean {
  const err = e as { code?: string; constraint?: string };
  return err?.code === "23505" && (constraint === undefined || err.constraint === constraint);
}
