import { BerthError, type Clock, type Logger } from "@berth/core";
import type { Db } from "@berth/db";
import { BootFailed, DYNO_SIZES, type DesiredApp, type ImageRef, type Runtime } from "@berth/runtime";
import type { ConfigStore } from "../domain/config.ts";
import { listFormation, syncFormation } from "../domain/formation.ts";
import { appendRelease, currentRelease, releaseQuery, settleRelease, type ReleaseRow } from "../domain/releases.ts";
import type { LogHub } from "./logs.ts";

/** The runtime as the deployer uses it. */
export type DeployRuntime = Pick<Runtime, "apply" | "scale" | "restart" | "runOnce" | "remove" | "list">;

export interface RouteNotifier {
  appChanged(appId: string): void;
  appRemoved(appId: string): void;
}

export interface ReleaseOutcome {
  version: number;
  status: "succeeded" | "failed";
  reason: string | null;
}

export interface DeployerDeps {
  db: Db;
  runtime: DeployRuntime;
  config: ConfigStore;
  clock: Clock;
  logger: Logger;
  routes: RouteNotifier;
  logs: LogHub;
  bootTimeoutMs: number;
  graceMs: number;
  releasePhaseTimeoutMs: number;
}

/**
 * Turns releases into running instances, start-first, one rollout at a time per
 * app. A release that fails to boot (or whose `release:` command fails) is
 * recorded as failed and the previous release keeps serving.
 */
export class Deployer {
  readonly #deps: DeployerDeps;
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #waiters = new Map<string, ((o: ReleaseOutcome) => void)[]>();

  constructor(deps: DeployerDeps) {
    this.#deps = deps;
  }

  /** Runs `fn` after every earlier task of the same app; errors do not break the chain. */
  #serial<T>(appId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(appId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => {});
    this.#chains.set(appId, settled);
    void settled.then(() => {
      if (this.#chains.get(appId) === settled) this.#chains.delete(appId);
    });
    return next;
  }

  #event(appId: string, text: string, dyno = "api"): void {
    this.#deps.logs.push({ appId, at: new Date(this.#deps.clock.now()), source: "app", dyno, text });
  }

  /** Resolves when the release of `buildId` settles (used by git pushes to print the outcome). */
  waitForBuildRelease(buildId: string): Promise<ReleaseOutcome> {
    return new Promise((resolve) => {
      const list = this.#waiters.get(buildId) ?? [];
      list.push(resolve);
      this.#waiters.set(buildId, list);
    });
  }

  /** A build finished: on success, append a release of it with the current config and roll it out. */
  async onBuildFinished(buildId: string): Promise<void> {
    const { db, clock } = this.#deps;
    const build = await db.selectFrom("builds").selectAll().where("id", "=", buildId).executeTakeFirst();
    if (!build || build.status !== "succeeded") return;
    await this.#serial(build.app_id, async () => {
      const already = await db.selectFrom("releases").select("id").where("build_id", "=", buildId).executeTakeFirst();
      if (already) return;
      const processes = (build.processes as { type: string; command: string }[] | null) ?? [];
      await syncFormation(db, build.app_id, processes, clock);
      const app = await db.selectFrom("apps").select("config_version").where("id", "=", build.app_id).executeTakeFirstOrThrow();
      const rel = await appendRelease(db, {
        appId: build.app_id,
        buildId,
        configVersion: app.config_version,
        description: `Deploy ${(build.source_version ?? build.id).slice(0, 8)}`,
        userId: build.user_id,
      });
      await this.#rollout(build.app_id, rel.id);
    });
  }

  /** Roll out a release created elsewhere (config change, rollback). */
  releaseCreated(appId: string, releaseId: string): Promise<void> {
    return this.#serial(appId, () => this.#rollout(appId, releaseId));
  }

  async #desired(appId: string, rel: ReleaseRow): Promise<{ desired: DesiredApp; releaseCommand?: string } | null> {
    const { db, config } = this.#deps;
    if (!rel.build_id) return null;
    const [app, build, formation] = await Promise.all([
      db.selectFrom("apps").selectAll().where("id", "=", appId).executeTakeFirstOrThrow(),
      db.selectFrom("builds").selectAll().where("id", "=", rel.build_id).executeTakeFirstOrThrow(),
      listFormation(db, appId),
    ]);
    const processes = (build.processes as { type: string; command: string }[] | null) ?? [];
    const env = await config.read(appId, rel.config_version);
    const releaseCommand = processes.find((p) => p.type === "release")?.command;
    const desired: DesiredApp = {
      teamId: app.team_id,
      appId,
      appName: app.name,
      release: rel.version,
      image: build.image as ImageRef,
      env,
      processes: formation.map((f) => ({
        type: f.type,
        command: f.command || processes.find((p) => p.type === f.type)?.command || "",
        quantity: f.quantity,
        size: DYNO_SIZES[f.size] ?? DYNO_SIZES.basic!,
      })),
      bootTimeoutMs: this.#deps.bootTimeoutMs,
      graceMs: this.#deps.graceMs,
      ...(app.health_check_path ? { healthCheckPath: app.health_check_path } : {}),
    };
    return releaseCommand ? { desired, releaseCommand } : { desired };
  }

  async #rollout(appId: string, releaseId: string): Promise<void> {
    const { db, runtime, logger } = this.#deps;
    const rel = (await releaseQuery(db).where("r.id", "=", releaseId).executeTakeFirst()) as ReleaseRow | undefined;
    if (!rel || rel.status !== "pending") return;
    let status: "succeeded" | "failed" = "succeeded";
    let reason: string | null = null;
    try {
      const plan = await this.#desired(appId, rel);
      if (plan) {
        if (plan.releaseCommand) {
          this.#event(appId, `Running release command: ${plan.releaseCommand}`, "release");
          const r = await runtime.runOnce(plan.desired, plan.releaseCommand, { timeoutMs: this.#deps.releasePhaseTimeoutMs });
          for (const line of r.output.split("\n").filter(Boolean).slice(-200)) this.#event(appId, line, "release.1");
          if (r.exitCode !== 0) throw new BootFailed(`release command exited with code ${r.exitCode}`);
        }
        await runtime.apply(plan.desired);
      }
    } catch (e) {
      status = "failed";
      reason = e instanceof BootFailed ? e.reason : e instanceof BerthError ? e.message : "platform error while starting the release";
      if (!(e instanceof BootFailed)) logger.error("rollout failed", { app: appId, release: rel.version, err: e });
    }
    await settleRelease(db, releaseId, status, reason);
    this.#event(appId, status === "succeeded" ? `Release v${rel.version} is live: ${rel.description}` : `Release v${rel.version} failed: ${reason}`);
    this.#deps.routes.appChanged(appId);
    const outcome = { version: rel.version, status, reason };
    if (rel.build_id) {
      for (const w of this.#waiters.get(rel.build_id) ?? []) w(outcome);
      this.#waiters.delete(rel.build_id);
    }
  }

  /** Formation changed: apply quantities and sizes to the current release (no new release). */
  formationChanged(appId: string): Promise<void> {
    return this.#serial(appId, async () => {
      const cur = await currentRelease(this.#deps.db, appId);
      if (!cur?.build_id) return;
      const plan = await this.#desired(appId, cur);
      if (!plan) return;
      try {
        await this.#deps.runtime.apply(plan.desired);
      } catch (e) {
        this.#event(appId, `Scaling failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.#deps.routes.appChanged(appId);
    });
  }

  /**
   * Sets the number of running web instances of the current release (the
   * autoscaler's and activator's knob); the formation's quantity is untouched.
   */
  scaleWeb(appId: string, n: number): Promise<void> {
    return this.#serial(appId, async () => {
      const cur = await currentRelease(this.#deps.db, appId);
      if (!cur?.build_id) return;
      try {
        await this.#deps.runtime.scale(appId, "web", n);
      } catch {
        // The runtime does not know the app (it restarted): apply the release anew.
        const plan = await this.#desired(appId, cur);
        if (!plan) return;
        const web = plan.desired.processes.find((p) => p.type === "web");
        if (web) web.quantity = n;
        await this.#deps.runtime.apply(plan.desired);
      }
      this.#deps.routes.appChanged(appId);
    });
  }

  restart(appId: string, which?: string): Promise<void> {
    return this.#serial(appId, async () => {
      await this.#deps.runtime.restart(appId, which);
      this.#event(appId, `Restarting ${which ?? "all dynos"}`);
      this.#deps.routes.appChanged(appId);
    });
  }

  remove(appId: string): Promise<void> {
    return this.#serial(appId, async () => {
      await this.#deps.runtime.remove(appId);
      this.#deps.routes.appRemoved(appId);
      this.#deps.logs.forget(appId);
    });
  }
}
