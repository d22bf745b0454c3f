/**
 * Prometheus text exposition (format 0.0.4) for the router, without a client library:
 * the router needs counters, one gauge family and two histograms, nothing more.
 */

export type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function num(n: number): string {
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return Number.isNaN(n) ? "NaN" : String(n);
}

function keyOf(labels: Labels): string {
  return JSON.stringify(Object.entries(labels));
}

class Counter {
  readonly series = new Map<string, { labels: Labels; value: number }>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels: Labels, by = 1): void {
    const k = keyOf(labels);
    const s = this.series.get(k);
    if (s) s.value += by;
    else this.series.set(k, { labels, value: by });
  }
  get(labels: Labels): number {
    return this.series.get(keyOf(labels))?.value ?? 0;
  }
  render(out: string[], type = "counter"): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${type}`);
    for (const s of this.series.values()) out.push(`${this.name}${labelText(s.labels)} ${num(s.value)}`);
  }
}

class Gauge extends Counter {
  set(labels: Labels, value: number): void {
    const k = keyOf(labels);
    const s = this.series.get(k);
    if (s) s.value = value;
    else this.series.set(k, { labels, value });
  }
  override render(out: string[]): void {
    super.render(out, "gauge");
  }
}

class Histogram {
  readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  constructor(name: string, help: string, buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
  }
  observe(labels: Labels, v: number): void {
    const k = keyOf(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) s.counts[i]!++;
    s.sum += v;
    s.count++;
  }
  count(labels: Labels): number {
    return this.series.get(keyOf(labels))?.count ?? 0;
  }
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${labelText(s.labels, ["le", num(b)])} ${s.counts[i]}`));
      out.push(`${this.name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${s.count}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`, `${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
  }
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const COLD_START_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60];

/** Point-in-time per-app state read at scrape time. */
export interface AppGauges {
  appId: string;
  appName: string;
  readyInstances: number;
  instances: number;
  queued: number;
  desiredInstances?: number;
  panicking?: boolean;
  sleeping?: "frozen" | "stopped";
}

/** The router's metrics; `render` produces the body of GET /metrics. */
export class RouterMetrics {
  readonly requests = new Counter("berth_router_requests_total", "Requests routed to an app, by status class.");
  readonly unrouted = new Counter("berth_router_unrouted_requests_total", "Requests for hosts no app serves.");
  readonly errors = new Counter("berth_router_errors_total", "Router error codes (H10, H12, ...) by app.");
  readonly latency = new Histogram("berth_router_request_duration_seconds", "Time from request received to response complete.", LATENCY_BUCKETS);
  readonly inFlight = new Gauge("berth_router_in_flight_requests", "Requests in flight per app, including held ones.");
  readonly coldStarts = new Counter("berth_router_cold_starts_total", "Wakes of an app that had no ready instance.");
  readonly coldStartDuration = new Histogram("berth_router_cold_start_duration_seconds", "Time from first held request to a ready instance.", COLD_START_BUCKETS);
  #inflight = new Map<string, { appName: string; n: number }>();

  /** A request for the app is in flight (forwarded or held). */
  requestStarted(appId: string, appName: string): void {
    const s = this.#inflight.get(appId);
    if (s) s.n++;
    else this.#inflight.set(appId, { appName, n: 1 });
  }

  requestEnded(appId: string): void {
    const s = this.#inflight.get(appId);
    if (s && --s.n <= 0) this.#inflight.delete(appId);
  }

  /** A routed request completed (or failed) with `status` after `seconds`. */
  observe(appId: string, appName: string, status: number, seconds: number, code?: string): void {
    const app = { app: appName, app_id: appId };
    this.requests.inc({ ...app, code: `${Math.floor(status / 100)}xx` });
    this.latency.observe(app, seconds);
    if (code) this.errors.inc({ ...app, code });
  }

  unroutedRequest(): void {
    this.unrouted.inc({});
  }

  coldStart(appId: string, appName: string, tier: "frozen" | "zero", ms: number): void {
    const labels = { app: appName, app_id: appId, tier };
    this.coldStarts.inc(labels);
    this.coldStartDuration.observe(labels, ms / 1000);
  }

  inFlightCount(appId: string): number {
    return this.#inflight.get(appId)?.n ?? 0;
  }

  render(apps: Iterable<AppGauges>): string {
    const out: string[] = [];
    this.requests.render(out);
    this.unrouted.render(out);
    this.errors.render(out);
    this.latency.render(out);
    this.inFlight.series.clear();
    for (const [appId, s] of this.#inflight) this.inFlight.set({ app: s.appName, app_id: appId }, s.n);
    this.inFlight.render(out);
    this.coldStarts.render(out);
    this.coldStartDuration.render(out);
    const instances = new Gauge("berth_router_instances", "Instances per app known to the router, by readiness.");
    const queued = new Gauge("berth_router_queued_requests", "Requests held by the activator per app.");
    const desired = new Gauge("berth_router_desired_instances", "Autoscaler's desired instance count.");
    const panic = new Gauge("berth_router_autoscaler_panic", "1 while the autoscaler is in panic mode.");
    const sleeping = new Gauge("berth_router_app_sleeping", "1 while an app is frozen or stopped for idleness.");
    for (const a of apps) {
      const l = { app: a.appName, app_id: a.appId };
      instances.set({ ...l, state: "ready" }, a.readyInstances);
      instances.set({ ...l, state: "not_ready" }, a.instances - a.readyInstances);
      queued.set(l, a.queued);
      if (a.desiredInstances !== undefined) desired.set(l, a.desiredInstances);
      panic.set(l, a.panicking ? 1 : 0);
      sleeping.set({ ...l, tier: "frozen" }, a.sleeping === "frozen" ? 1 : 0);
      sleeping.set({ ...l, tier: "stopped" }, a.sleeping === "stopped" ? 1 : 0);
    }
    for (const g of [instances, queued, desired, panic, sleeping]) g.render(out);
    return out.join("\n") + "\n";
  }
}
