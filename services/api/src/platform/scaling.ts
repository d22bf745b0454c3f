import { Conflict } from "@berth/core";
import type { Db } from "@berth/db";
import type { Instance, Runtime } from "@berth/runtime";
import type { Deployer } from "./deployer.ts";
import type { RouteNotifier } from "./deployer.ts";

/**
 * What the router's activator and autoscaler ask for: wake (thaw a frozen app, or
 * start one instance of a stopped one), freeze (tier 1), and web instance counts
 * (tier 2 is a count of zero).
 */
export interface ScalingDeps {
  db: Db;
  runtime: Pick<Runtime, "list" | "freeze" | "thaw" | "canFreeze">;
  deployer: Deployer;
  routes: RouteNotifier;
}

export class Scaling {
  readonly #deps: ScalingDeps;
  readonly #waking = new Map<string, Promise<Instance[]>>();
  constructor(deps: ScalingDeps) {
    this.#deps = deps;
  }

  /**
   * Idempotent and coalesced: concurrent wakes of one app share one start. Resolves
   * with the app's instances after the wake, which the router can use before the
   * route feed brings the same news.
   */
  wake(appId: string): Promise<Instance[]> {
    const running = this.#waking.get(appId);
    if (running) return running;
    const p = this.#wake(appId).finally(() => this.#waking.delete(appId));
    this.#waking.set(appId, p);
    return p;
  }

  async #wake(appId: string): Promise<Instance[]> {
    const { runtime, routes } = this.#deps;
    const web = (await runtime.list(appId)).filter((i) => i.type === "web");
    if (web.some((i) => i.state === "frozen")) {
      await runtime.thaw(appId);
    } else if (!web.some((i) => i.state === "up")) {
      const app = await this.#deps.db
        .selectFrom("apps")
        .leftJoin("formations as f", (j) => j.onRef("f.app_id", "=", "apps.id").on("f.type", "=", "web"))
        .select(["apps.min_instances", "f.quantity"])
        .where("apps.id", "=", appId)
        .executeTakeFirst();
      // web=0 means the app is turned off (`ps:scale web=0`): requests must not start it.
      if (!app?.quantity) throw new Conflict("The app has no web dynos: scale web to 1 or more to serve requests.");
      await this.#deps.deployer.scaleWeb(appId, Math.max(1, app.min_instances));
    }
    routes.appChanged(appId);
    return runtime.list(appId);
  }

  async freeze(appId: string): Promise<void> {
    if (!this.#deps.runtime.canFreeze) return;
    await this.#deps.runtime.freeze(appId);
    this.#deps.routes.appChanged(appId);
  }

  scaleWeb(appId: string, n: number): Promise<void> {
    return this.#deps.deployer.scaleWeb(appId, n);
  }
}
