import { Invalid } from "./errors.ts";

/** Names that would collide with platform hosts or confuse users. */
export const RESERVED_APP_NAMES = new Set([
  "api", "www", "git", "admin", "app", "apps", "berth", "console", "dashboard", "router",
  "registry", "builder", "status", "help", "docs", "mail", "login", "auth", "oauth", "static",
  "assets", "cdn", "metrics", "internal", "system", "kube", "kubernetes", "localhost", "default",
]);

const APP_NAME = /^[a-z][a-z0-9-]{2,29}$/;

/** App names: 3–30 lowercase letters, digits and dashes, starting with a letter (Heroku's rule). */
export function validateAppName(name: unknown): string {
  if (typeof name !== "string" || !APP_NAME.test(name) || name.endsWith("-") || name.includes("--")) {
    throw new Invalid(
      "Name must start with a letter, end with a letter or digit and can only contain lowercase letters, digits, and dashes, and be between 3 and 30 characters.",
    );
  }
  if (RESERVED_APP_NAMES.has(name)) throw new Invalid(`Name ${name} is reserved.`);
  return name;
}

export function validateTeamName(name: unknown): string {
  if (typeof name !== "string" || !/^[a-z][a-z0-9-]{1,29}$/.test(name) || name.endsWith("-")) {
    throw new Invalid("Team name must be 2–30 lowercase letters, digits and dashes, starting with a letter.");
  }
  if (RESERVED_APP_NAMES.has(name)) throw new Invalid(`Name ${name} is reserved.`);
  return name;
}

/** Process types as in a Procfile: web, worker, release, clock… */
export function validateProcessType(type: unknown): string {
  if (typeof type !== "string" || !/^[a-zA-Z0-9_-]{1,30}$/.test(type)) {
    throw new Invalid("Process type must be 1–30 letters, digits, dashes or underscores.");
  }
  return type;
}
