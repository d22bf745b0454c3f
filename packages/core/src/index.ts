export * from "./errors.ts";
export * from "./clock.ts";
export * from "./log.ts";
export * from "./names.ts";
export * from "./config.ts";
export * from "./secrets.ts";
export * from "./keyring.ts";
