import { Invalid } from "@berth/core";
import type { InstanceState } from "@berth/runtime";

/** One web instance the router may forward to. */
export interface InstanceRoute {
  /** Dyno name, e.g. web.1; shows up as `dyno=` in access lines. */
  name: string;
  host: string;
  port: number;
  /** Absent means "up": the control plane may list only ready instances. */
  state?: InstanceState;
}

/** Autoscaling bounds of one app; see autoscaler.ts and SCALING.md. */
export interface ScalePolicy {
  /** 0 allows idle scale-to-zero. */
  min: number;
  max: number;
  /** In-flight requests one instance should carry (Knative's container concurrency target). */
  targetConcurrency: number;
  /** Idle time (no request in flight) before tier 1: freeze. 0 disables. */
  idleFreezeMs: number;
  /** Idle time before tier 2: stop (true zero). 0 disables. */
  idleStopMs: number;
}

/** What the control plane tells the router about one app. */
export interface AppRoute {
  appId: string;
  appName: string;
  /** Custom domains; `<appName>.<baseDomain>` is always routed too. */
  hosts: string[];
  instances: InstanceRoute[];
  maintenance: boolean;
  /** Time the app has to start its response (Heroku's 30 s). */
  timeoutMs: number;
  scale: ScalePolicy;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export const DEFAULT_SCALE: ScalePolicy = { min: 0, max: 10, targetConcurrency: 100, idleFreezeMs: 5 * 60_000, idleStopMs: 30 * 60_000 };

export function isReady(i: InstanceRoute): boolean {
  return i.state === undefined || i.state === "up";
}

/** Lowercase, no port, no trailing dot: the key the table is indexed by. */
export function normalizeHost(raw: string | undefined): string {
  if (!raw) return "";
  let h = raw.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    h = end < 0 ? h : h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(":");
    // One colon is host:port; more is a bare IPv6 address, which has no port.
    if (colon >= 0 && h.indexOf(":", colon + 1) < 0) h = h.slice(0, colon);
  }
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}

function nonNegInt(v: unknown, key: string, appId: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new Invalid(`route ${appId}: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function validated(r: AppRoute): AppRoute {
  const id = typeof r?.appId === "string" && r.appId ? r.appId : "";
  if (!id) throw new Invalid(`route: appId must be a non-empty string, got ${JSON.stringify(r?.appId)}`);
  if (typeof r.appName !== "string" || !r.appName) throw new Invalid(`route ${id}: appName must be a non-empty string`);
  if (!Array.isArray(r.hosts)) throw new Invalid(`route ${id}: hosts must be an array`);
  if (!Array.isArray(r.instances)) throw new Invalid(`route ${id}: instances must be an array`);
  const instances = r.instances.map((i, n) => {
    if (typeof i?.host !== "string" || !i.host) throw new Invalid(`route ${id}: instances[${n}].host must be a string`);
    const port = nonNegInt(i.port, `instances[${n}].port`, id);
    if (port < 1 || port > 65535) throw new Invalid(`route ${id}: instances[${n}].port out of range: ${port}`);
    return { name: String(i.name ?? ""), host: i.host, port, ...(i.state ? { state: i.state } : {}) };
  });
  const s = r.scale ?? DEFAULT_SCALE;
  const scale: ScalePolicy = {
    min: nonNegInt(s.min, "scale.min", id),
    max: nonNegInt(s.max, "scale.max", id),
    targetConcurrency: s.targetConcurrency,
    idleFreezeMs: nonNegInt(s.idleFreezeMs, "scale.idleFreezeMs", id),
    idleStopMs: nonNegInt(s.idleStopMs, "scale.idleStopMs", id),
  };
  // max 0 (with min 0) is an app turned off (web scaled to 0): the router answers H14.
  if (scale.max === 0 ? scale.min !== 0 : scale.max < Math.max(1, scale.min)) {
    throw new Invalid(`route ${id}: scale.max (${scale.max}) must be 0 (app off, min 0) or >= max(1, scale.min)`);
  }
  if (typeof scale.targetConcurrency !== "number" || !(scale.targetConcurrency > 0)) {
    throw new Invalid(`route ${id}: scale.targetConcurrency must be > 0, got ${JSON.stringify(scale.targetConcurrency)}`);
  }
  const timeoutMs = r.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : nonNegInt(r.timeoutMs, "timeoutMs", id);
  return {
    appId: id,
    appName: r.appName.toLowerCase(),
    hosts: r.hosts.map((h) => normalizeHost(h)).filter((h) => h !== ""),
    instances,
    maintenance: r.maintenance === true,
    timeoutMs: timeoutMs > 0 ? timeoutMs : DEFAULT_TIMEOUT_MS,
    scale,
  };
}

interface Entry {
  route: AppRoute;
  ready: InstanceRoute[];
}

/**
 * The router's in-memory view of apps, fed by the control plane. Lookups by host,
 * name or id are O(1). Listeners hear every app id whose route changed, which is
 * how held requests learn that an instance became ready (no polling).
 */
export class RouteTable {
  #byId = new Map<string, Entry>();
  #byHost = new Map<string, string>();
  #byName = new Map<string, string>();
  #listeners = new Set<(appId: string) => void>();

  /** Swap the whole table (control plane resync). */
  replace(routes: readonly AppRoute[]): void {
    const next = routes.map(validated);
    const changed = new Set<string>(this.#byId.keys());
    this.#byId.clear();
    this.#byHost.clear();
    this.#byName.clear();
    for (const r of next) {
      this.#index(r);
      changed.add(r.appId);
    }
    for (const id of changed) this.#notify(id);
  }

  /** Add or change one app. */
  upsert(route: AppRoute): void {
    const r = validated(route);
    this.#unindex(r.appId);
    this.#index(r);
    this.#notify(r.appId);
  }

  /** Replace one app's instances, keeping the rest of its route (a wake's answer). No-op for an unknown app. */
  setInstances(appId: string, instances: InstanceRoute[]): void {
    const cur = this.#byId.get(appId);
    if (!cur) return;
    this.upsert({ ...cur.route, instances });
  }

  remove(appId: string): void {
    if (!this.#byId.has(appId)) return;
    this.#unindex(appId);
    this.#notify(appId);
  }

  get(appId: string): AppRoute | undefined {
    return this.#byId.get(appId)?.route;
  }

  has(appId: string): boolean {
    return this.#byId.has(appId);
  }

  /** Route for a Host header value (any case, with or without port). */
  byHost(host: string): AppRoute | undefined {
    return this.byHostKey(normalizeHost(host));
  }

  /** Route for a host already normalized with normalizeHost (the proxy does it once per request). */
  byHostKey(host: string): AppRoute | undefined {
    const id = this.#byHost.get(host);
    return id === undefined ? undefined : this.#byId.get(id)?.route;
  }

  byName(name: string): AppRoute | undefined {
    const id = this.#byName.get(name.toLowerCase());
    return id === undefined ? undefined : this.#byId.get(id)?.route;
  }

  /** Instances that can take a request now. */
  readyInstances(appId: string): readonly InstanceRoute[] {
    return this.#byId.get(appId)?.ready ?? [];
  }

  readyCount(appId: string): number {
    return this.readyInstances(appId).length;
  }

  /** Cold-start tier as the control plane sees it: frozen if any instance is frozen. */
  coldTier(appId: string): "frozen" | "zero" {
    return this.#byId.get(appId)?.route.instances.some((i) => i.state === "frozen") ? "frozen" : "zero";
  }

  *routes(): Generator<AppRoute> {
    for (const e of this.#byId.values()) yield e.route;
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Hear about every changed app id; returns the unsubscribe function. */
  subscribe(listener: (appId: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #index(r: AppRoute): void {
    this.#byId.set(r.appId, { route: r, ready: r.instances.filter(isReady) });
    this.#byName.set(r.appName, r.appId);
    for (const h of r.hosts) this.#byHost.set(h, r.appId);
  }

  #unindex(appId: string): void {
    const old = this.#byId.get(appId);
    if (!old) return;
    this.#byId.delete(appId);
    // Only drop keys that still point at this app: another app may have claimed them since.
    if (this.#byName.get(old.route.appName) === appId) this.#byName.delete(old.route.appName);
    for (const h of old.route.hosts) if (this.#byHost.get(h) === appId) this.#byHost.delete(h);
  }

  #notify(appId: string): void {
    for (const l of this.#listeners) l(appId);
  }
}
