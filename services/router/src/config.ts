import { Invalid } from "@berth/core";
import type { AutoscalerTuning } from "./autoscaler.ts";
import { DEFAULT_LIMITS, type RouterLimits } from "./server.ts";

/** The router's settings after validation; main.ts gets the raw object from the lead's config loader. */
export interface RouterConfig {
  host: string;
  port: number;
  adminHost: string;
  adminPort: number;
  baseDomain: string;
  /** Host header that reaches the admin endpoints on the public port; empty = off. */
  adminVirtualHost: string;
  proto: "http" | "https";
  limits: RouterLimits;
  autoscale: AutoscalerTuning;
  /** Time in-flight requests get to finish on shutdown. */
  drainMs: number;
}

const DEFAULTS = {
  host: "127.0.0.1",
  port: 7780,
  adminHost: "127.0.0.1",
  adminPort: 7781,
  baseDomain: "localhost",
  adminVirtualHost: "",
  proto: "http" as const,
  drainMs: 10_000,
};

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function int(o: Obj, key: string, path: string, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[key];
  if (v === undefined) return dflt;
  const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw new Invalid(`router config: ${path}${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return n;
}

function str(o: Obj, key: string, dflt: string, ok: (s: string) => boolean = () => true): string {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== "string" || !ok(v)) throw new Invalid(`router config: ${key} is invalid: ${JSON.stringify(v)}`);
  return v;
}

/** Validate the router's config, naming the key and the bad value on failure. */
export function parseRouterConfig(input: unknown): RouterConfig {
  const o: Obj = input === undefined ? {} : isObj(input) ? input : (() => { throw new Invalid("router config must be an object"); })();
  const lim: Obj = o.limits === undefined ? {} : isObj(o.limits) ? o.limits : (() => { throw new Invalid("router config: limits must be an object"); })();
  const as: Obj = o.autoscale === undefined ? {} : isObj(o.autoscale) ? o.autoscale : (() => { throw new Invalid("router config: autoscale must be an object"); })();
  for (const k of Object.keys(lim)) if (!(k in DEFAULT_LIMITS)) throw new Invalid(`router config: unknown key limits.${k}`);
  const limits = Object.fromEntries(
    (Object.keys(DEFAULT_LIMITS) as (keyof RouterLimits)[]).map((k) => [k, int(lim, k, "limits.", DEFAULT_LIMITS[k], 0)]),
  ) as unknown as RouterLimits;
  if (limits.requestTimeoutMs > 0 && limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new Invalid(`router config: limits.headersTimeoutMs (${limits.headersTimeoutMs}) must not exceed limits.requestTimeoutMs (${limits.requestTimeoutMs})`);
  }
  const autoscale: AutoscalerTuning = {
    tickMs: int(as, "tickMs", "autoscale.", 1000, 10),
    stableWindowMs: int(as, "stableWindowMs", "autoscale.", 60_000, 10),
    panicWindowMs: int(as, "panicWindowMs", "autoscale.", 6_000, 10),
    panicThreshold: typeof as.panicThreshold === "number" ? as.panicThreshold : 2,
  };
  if (!(autoscale.panicThreshold > 1)) throw new Invalid(`router config: autoscale.panicThreshold must be > 1, got ${JSON.stringify(as.panicThreshold)}`);
  if (autoscale.panicWindowMs > autoscale.stableWindowMs) throw new Invalid("router config: autoscale.panicWindowMs must not exceed autoscale.stableWindowMs");
  const hostname = (s: string) => /^[a-z0-9.:[\]-]*$/i.test(s);
  return {
    host: str(o, "host", DEFAULTS.host, hostname),
    port: int(o, "port", "", DEFAULTS.port, 0, 65535),
    adminHost: str(o, "adminHost", DEFAULTS.adminHost, hostname),
    adminPort: int(o, "adminPort", "", DEFAULTS.adminPort, 0, 65535),
    baseDomain: str(o, "baseDomain", DEFAULTS.baseDomain, (s) => /^[a-z0-9.-]+$/i.test(s)),
    adminVirtualHost: str(o, "adminVirtualHost", DEFAULTS.adminVirtualHost, hostname),
    proto: str(o, "proto", DEFAULTS.proto, (s) => s === "http" || s === "https") as "http" | "https",
    limits,
    autoscale,
    drainMs: int(o, "drainMs", "", DEFAULTS.drainMs, 0),
  };
}
