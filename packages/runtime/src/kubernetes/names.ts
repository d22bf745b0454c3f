/**
 * Names and labels of everything Berth creates. Labels are how Berth finds (and
 * deletes) its own objects and nothing else: every object carries
 * `app.kubernetes.io/managed-by=berth`, app objects also `berth.dev/app=<appId>`.
 */
import { createHash } from "node:crypto";
import { Invalid } from "@berth/core";

export const FIELD_MANAGER = "berth";
/** A second field manager for the restart annotation, so that applies of a release do not own (and drop) it. */
export const RESTART_FIELD_MANAGER = "berth-restart";

export const L_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "berth";
export const L_TEAM = "berth.dev/team";
export const L_APP = "berth.dev/app";
export const L_PROCESS = "berth.dev/process";
export const L_RELEASE = "berth.dev/release";
export const L_SIZE = "berth.dev/size";
/** "dyno" for pods of Deployments, "one-off" for runOnce pods: Deployment selectors never adopt one-offs. */
export const L_ROLE = "berth.dev/role";
/** Hash of the pod template Berth applied: pods with another value belong to an older rollout. */
export const L_SPEC = "berth.dev/spec";
/** Dyno name (web.1), set on each pod by the runtime when it lifts the scheduling gate. */
export const L_DYNO = "berth.dev/dyno";
export const A_APP_NAME = "berth.dev/app-name";
/** The process type as written in the Procfile (the label may be a hash of it). */
export const A_PROCESS_TYPE = "berth.dev/process-type";
export const A_APP_IMAGE = "berth.dev/app-image";
export const A_RESTARTED_AT = "berth.dev/restarted-at";
/** The scheduling gate every dyno pod is created with; see dynos.ts. */
export const DYNO_GATE = "berth.dev/dyno";

export const MANAGED_SELECTOR = `${L_MANAGED_BY}=${MANAGED_BY}`;

/** The port every instance listens on (each pod has its own IP): PORT=5000, as on Heroku's Cedar. */
export const APP_PORT = 5000;
export const APP_CONTAINER = "app";

const LABEL_VALUE = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** Team and app ids go into label values and names: refuse anything that does not fit rather than mangle it. */
export function checkId(what: string, id: string): string {
  if (!LABEL_VALUE.test(id)) throw new Invalid(`${what} ${JSON.stringify(id)} cannot be used as a Kubernetes label value`);
  return id;
}

export function teamNamespace(prefix: string, teamId: string): string {
  checkId("team id", teamId);
  const ns = prefix + teamId.toLowerCase();
  if (ns.length <= 63 && DNS_LABEL.test(ns)) return ns;
  // Ids that are not DNS-safe (or too long) get a stable hash instead; the team label tells whose it is.
  return prefix + hash(teamId, 63 - prefix.length > 32 ? 32 : 63 - prefix.length);
}

/**
 * Base of an app's object names: the app id when it is short and DNS-safe (a UUID is),
 * else a hash; "a" in front when it starts with a digit (Service names are DNS-1035
 * labels: a letter first).
 */
export function appSlug(appId: string): string {
  checkId("app id", appId);
  const s = appId.toLowerCase();
  if (s.length > 39 || !DNS_LABEL.test(s)) return `a${hash(appId, 20)}`;
  return /^[a-z]/.test(s) ? s : `a${s}`;
}

/** Deployment (and Service) name of one process type; pods add ~17 characters and must stay within 63. */
export function deploymentName(appId: string, type: string): string {
  const name = `${appSlug(appId)}-${type}`;
  // Types that are not DNS-safe as they are (Web, clock_2) get a hash, so that "Web" and "web" stay apart.
  return name.length <= 46 && DNS_LABEL.test(name) ? name : `${appSlug(appId).slice(0, 24)}-p${hash(type, 12)}`;
}

/** Label value for a process type (types are Procfile names: letters, digits, - and _). */
export function processLabel(type: string): string {
  return LABEL_VALUE.test(type) ? type : `p${hash(type, 12)}`;
}

export function serviceName(appId: string): string {
  return deploymentName(appId, "web");
}

/** Config vars are stored content-addressed: one immutable Secret per distinct environment. */
export function envSecretName(appId: string, env: Record<string, string>): string {
  const canonical = JSON.stringify(Object.keys(env).sort().map((k) => [k, env[k]]));
  return `${appSlug(appId)}-env-${hash(canonical, 12)}`;
}

export function appSelector(appId: string): string {
  return `${MANAGED_SELECTOR},${L_APP}=${appId}`;
}

export function hash(s: string, n: number): string {
  return createHash("sha256").update(s).digest("hex").slice(0, n);
}

/** "web.3" → 3 */
export function dynoIndex(dyno: string | undefined): number | undefined {
  const m = dyno ? /\.([0-9]+)$/.exec(dyno) : null;
  return m ? Number(m[1]) : undefined;
}
