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

interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

interface HistogramSeries {
  readonly labels: Labels;
  readonly counts: number[];
  sum: number;
  count: number;
}

class Counter {
  readonly series = new Map<string, CounterSeries>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  /** The series for `labels`, created on first use; hot paths keep it and add to `value`. */
  bind(labels: Labels): CounterSeries {
    const k = keyOf(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { labels, value: 0 }));
    return s;
  }
  inc(labels: Labels, by = 1): void {
    this.bind(labels).value += by;
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
    this.bind(labels).value = value;
  }
  override render(out: string[]): void {
    super.render(out, "gauge");
  }
}

class Histogram {
  readonly series = new Map<string, HistogramSeries>();
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  constructor(name: string, help: string, buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
  }
  bind(labels: Labels): HistogramSeries {
    const k = keyOf(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    return s;
  }
  /** Add `v` to a bound series. */
  record(s: HistogramSeries, v: number): void {
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) if (v <= b[i]!) s.counts[i]!++;
    s.sum += v;
    s.count++;
  }
  observe(labels: Labels, v: number): void {
    this.record(this.bind(labels), v);
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

/**
 * One app's request series, bound on first use: a request costs a few additions, no
 * label formatting. A renamed app gets new series (its old ones stay, as Prometheus
 * expects of a label change) and keeps its in-flight count.
 */
export class AppSeries {
  readonly appId: string;
  readonly appName: string;
  readonly #m: RouterMetrics;
  readonly inFlight: { n: number };
  /** Requests by status class (index = status / 100). */
  readonly #byClass: (CounterSeries | undefined)[] = [];
  #latency: HistogramSeries | undefined;
  #errors: Map<string, CounterSeries> | undefined;

  constructor(m: RouterMetrics, appId: string, appName: string, inFlight: { n: number }) {
    this.#m = m;
    this.appId = appId;
    this.appName = appName;
    this.inFlight = inFlight;
  }

  /** A request for the app is in flight (forwarded or held). */
  started(): void {
    this.inFlight.n++;
  }

  ended(): void {
    if (this.inFlight.n > 0) this.inFlight.n--;
  }

  /** A routed request completed (or failed) with `status` after `seconds`; `code` is its H code. */
  observe(status: number, seconds: number, code?: string): void {
    const m = this.#m;
    const cls = Math.floor(status / 100);
    let c = this.#byClass[cls];
    if (!c) this.#byClass[cls] = c = m.requests.bind({ app: this.appName, app_id: this.appId, code: `${cls}xx` });
    c.value++;
    this.#latency ??= m.latency.bind({ app: this.appName, app_id: this.appId });
    m.latency.record(this.#latency, seconds);
    if (code) {
      this.#errors ??= new Map();
      let e = this.#errors.get(code);
      if (!e) this.#errors.set(code, (e = m.errors.bind({ app: this.appName, app_id: this.appId, code })));
      e.value++;
    }
  }
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
  readonly #apps = new Map<string, AppSeries>();
  readonly #unrouted = this.unrouted.bind({});

  /** The app's series (one map lookup); keep it for the request's lifetime. */
  app(appId: string, appName: string): AppSeries {
    let s = this.#apps.get(appId);
    if (s === undefined || s.appName !== appName) {
      s = new AppSeries(this, appId, appName, s?.inFlight ?? { n: 0 });
      this.#apps.set(appId, s);
    }
    return s;
  }

  unroutedRequest(): void {
    this.#unrouted.value++;
  }

  coldStart(appId: string, appName: string, tier: "frozen" | "zero", ms: number): void {
    const labels = { app: appName, app_id: appId, tier };
    this.coldStarts.inc(labels);
    this.coldStartDuration.observe(labels, ms / 1000);
  }

  inFlightCount(appId: string): number {
    return this.#apps.get(appId)?.inFlight.n ?? 0;
  }

  render(apps: Iterable<AppGauges>): string {
    const out: string[] = [];
    this.requests.render(out);
    this.unrouted.render(out);
    this.errors.render(out);
    this.latency.render(out);
    this.inFlight.series.clear();
    for (const s of this.#apps.values()) if (s.inFlight.n > 0) this.inFlight.set({ app: s.appName, app_id: s.appId }, s.inFlight.n);
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
