import type { Logger } from "@berth/core";
import type { Db } from "@berth/db";
import type { Instance } from "@berth/runtime";
import type { AppRoute, InstanceRoute } from "@berth/router";

interface AppRow {
  id: string;
  name: string;
  maintenance: boolean;
  min_instances: number;
  max_instances: number;
  target_concurrency: number;
  idle_freeze_seconds: number;
  idle_stop_seconds: number;
  request_timeout_seconds: number;
  /** The web formation's quantity; null before the first build. */
  web_quantity: number | null;
}

/** The instances a router may forward to (or wake): web ones with an address, up or frozen. */
export function webRoutes(instances: readonly Instance[]): InstanceRoute[] {
  return instances
    .filter((i) => i.type === "web" && i.address && (i.state === "up" || i.state === "frozen"))
    .map((i) => ({ name: i.name, host: i.address!.host, port: i.address!.port, state: i.state }));
}

export type FeedEvent = { kind: "upsert"; route: AppRoute } | { kind: "remove"; appId: string };

/**
 * The control plane's side of the router's route table: computes each app's
 * route from the database (name, domains, maintenance, scaling) and the runtime
 * (ready instances and their addresses), and pushes changes to every connected
 * router. A router that (re)connects first gets a full snapshot, so a restarted
 * router or API converges without anyone replaying history.
 */
export class RouteFeed {
  readonly #db: Db;
  readonly #instances: (appId?: string) => Promise<Instance[]>;
  readonly #logger: Logger;
  readonly #subs = new Set<(e: FeedEvent) => void>();
  readonly #pending = new Set<string>();
  #scheduled = false;

  constructor(deps: { db: Db; instances: (appId?: string) => Promise<Instance[]>; logger: Logger }) {
    this.#db = deps.db;
    this.#instances = deps.instances;
    this.#logger = deps.logger;
  }

  #query() {
    return this.#db
      .selectFrom("apps")
      .leftJoin("formations as web", (j) => j.onRef("web.app_id", "=", "apps.id").on("web.type", "=", "web"))
      .select(["apps.id", "apps.name", "apps.maintenance", "apps.min_instances", "apps.max_instances", "apps.target_concurrency", "apps.idle_freeze_seconds", "apps.idle_stop_seconds", "apps.request_timeout_seconds", "web.quantity as web_quantity"]);
  }

  #route(app: AppRow, hosts: string[], instances: Instance[]): AppRoute {
    return {
      appId: app.id,
      appName: app.name,
      hosts,
      instances: webRoutes(instances),
      maintenance: app.maintenance,
      timeoutMs: app.request_timeout_seconds * 1000,
      // `ps:scale web=0` (or no web process yet) turns the app off: max 0 tells the
      // router not to wake it (it answers H14, no web dynos running).
      scale: {
        min: app.web_quantity ? app.min_instances : 0,
        max: app.web_quantity ? app.max_instances : 0,
        targetConcurrency: app.target_concurrency,
        idleFreezeMs: app.idle_freeze_seconds * 1000,
        idleStopMs: app.idle_stop_seconds * 1000,
      },
    };
  }

  /** Every app's route: what a connecting router starts from. */
  async snapshot(): Promise<AppRoute[]> {
    const [apps, domains, instances] = await Promise.all([
      this.#query().execute(),
      this.#db.selectFrom("domains").select(["app_id", "hostname"]).execute(),
      this.#instances(),
    ]);
    const hosts = new Map<string, string[]>();
    for (const d of domains) (hosts.get(d.app_id) ?? hosts.set(d.app_id, []).get(d.app_id)!).push(d.hostname);
    const byApp = new Map<string, Instance[]>();
    for (const i of instances) (byApp.get(i.appId) ?? byApp.set(i.appId, []).get(i.appId)!).push(i);
    return apps.map((a) => this.#route(a, hosts.get(a.id) ?? [], byApp.get(a.id) ?? []));
  }

  async routeOf(appId: string): Promise<AppRoute | null> {
    const app = await this.#query().where("apps.id", "=", appId).executeTakeFirst();
    if (!app) return null;
    const [domains, instances] = await Promise.all([
      this.#db.selectFrom("domains").select("hostname").where("app_id", "=", appId).execute(),
      this.#instances(appId),
    ]);
    return this.#route(app, domains.map((d) => d.hostname), instances);
  }

  subscribe(fn: (e: FeedEvent) => void): () => void {
    this.#subs.add(fn);
    return () => this.#subs.delete(fn);
  }

  /** Something about the app changed; coalesced so a burst of changes sends one update. */
  appChanged(appId: string): void {
    this.#pending.add(appId);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => void this.#flush());
  }

  appRemoved(appId: string): void {
    for (const fn of this.#subs) fn({ kind: "remove", appId });
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const ids = [...this.#pending];
    this.#pending.clear();
    for (const id of ids) {
      try {
        const route = await this.routeOf(id);
        const e: FeedEvent = route ? { kind: "upsert", route } : { kind: "remove", appId: id };
        for (const fn of this.#subs) fn(e);
      } catch (err) {
        this.#logger.warn("route update failed", { app: id, err });
      }
    }
  }
}
