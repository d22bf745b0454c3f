import { Conflict, Invalid, NotFound } from "@berth/core";
import { isUniqueViolation, type Db } from "@berth/db";
import { isUuid } from "./access.ts";

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** RFC 1123 host names, lowercased; at least two labels; no wildcards for now. */
export function validateHostname(raw: unknown, baseDomain: string): string {
  if (typeof raw !== "string") throw new Invalid("hostname must be a string.");
  const host = raw.trim().toLowerCase().replace(/\.$/, "");
  const labels = host.split(".");
  if (host.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l))) {
    throw new Invalid(`${JSON.stringify(raw.slice(0, 80))} is not a valid hostname.`);
  }
  if (host === baseDomain || host.endsWith(`.${baseDomain}`)) {
    throw new Invalid(`Hostnames under ${baseDomain} belong to the platform; add your own domain.`);
  }
  return host;
}

export function listDomains(db: Db, appId: string) {
  return db.selectFrom("domains").selectAll().where("app_id", "=", appId).orderBy("hostname").execute();
}

export async function getDomain(db: Db, appId: string, idOrHost: string) {
  const q = db.selectFrom("domains").selectAll().where("app_id", "=", appId);
  const row = await (isUuid(idOrHost) ? q.where("id", "=", idOrHost) : q.where("hostname", "=", idOrHost.toLowerCase())).executeTakeFirst();
  if (!row) throw new NotFound("domain");
  return row;
}

/**
 * Adds a custom domain. Hostnames are unique across the platform, so one team can
 * never route another team's domain; the router serves only hostnames listed here.
 */
export async function addDomain(db: Db, appId: string, hostname: string, appHost: string) {
  try {
    return await db.insertInto("domains").values({ app_id: appId, hostname, kind: "custom", cname: appHost, status: "succeeded" }).returningAll().executeTakeFirstOrThrow();
  } catch (e) {
    if (isUniqueViolation(e)) throw new Conflict(`${hostname} is already in use by an app.`);
    throw e;
  }
}

export async function removeDomain(db: Db, appId: string, idOrHost: string) {
  const d = await getDomain(db, appId, idOrHost);
  if (d.kind === "heroku") throw new Invalid("The app's default domain cannot be removed.");
  await db.deleteFrom("domains").where("id", "=", d.id).execute();
  return d;
}
