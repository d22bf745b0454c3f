export * from "./db.ts";
export * from "./schema.ts";
export * from "./migrations.ts";
export * from "./embedded.ts";
export * from "./events.ts";
export * from "./embedded-process.ts";
export * from "./config-vars.ts";
