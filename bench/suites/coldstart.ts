/**
 * coldStart: request to first byte through the router for an app in each idle tier.
 * The tier is forced with the platform's own scaling calls (Scaling.freeze, and
 * Scaling.scaleWeb(app, 0) for true zero), the same ones the router's idle timers make;
 * the request then goes through the router's activator, which wakes the app. We wait
 * for the route feed to announce the new state (and a little for the router to take
 * it) before each timed request. Baseline: starting the same app by hand and waiting
 * for its answer (app.ts startByHand).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { TestPlatform } from "../../test/harness/platform.ts";
import type { AppRoute } from "@berth/router";
import { body, startByHand } from "../app.ts";
import { httpGet, log, pollHttp } from "../proc.ts";
import type { Profile } from "../profile.ts";
import { round, summarize } from "../stats.ts";
import type { BenchApp } from "./push.ts";

export async function coldStartSuite(p: TestPlatform, prof: Profile, app: BenchApp) {
  const routerPort = Number(new URL(p.routerUrl).port);
  const expect = body(app.version);
  const frozen: number[] = [];
  const zero: number[] = [];
  const byHand: number[] = [];

  const ensureUp = () => pollHttp(routerPort, { host: app.host, ok: (a) => a.status === 200 && a.body === expect, timeoutMs: 60_000 });
  const timedRequest = async (): Promise<number> => {
    const a = await httpGet(routerPort, "/", { host: app.host, timeoutMs: 60_000 });
    if (a.status !== 200 || a.body !== expect) throw new Error(`wake answered ${a.status} ${a.body.slice(0, 200)}`);
    return a.ttfbMs;
  };

  for (let i = 0; i < prof.wakes; i++) {
    await ensureUp();
    await forceState(p, app.id, (r) => r.instances.length > 0 && r.instances.every((x) => x.state === "frozen"), () => p.platform.scaling.freeze(app.id));
    frozen.push(await timedRequest());

    await ensureUp();
    await forceState(p, app.id, (r) => r.instances.length === 0, () => p.platform.scaling.scaleWeb(app.id, 0));
    zero.push(await timedRequest());

    byHand.push(await startByHand(app.repo, expect));
    log(`coldStart ${i + 1}/${prof.wakes}: frozen ${Math.round(frozen.at(-1)!)} ms, zero ${Math.round(zero.at(-1)!)} ms, by hand ${Math.round(byHand.at(-1)!)} ms`);
  }
  await ensureUp();
  const f = summarize(frozen);
  const z = summarize(zero);
  const b = summarize(byHand);
  return {
    n: prof.wakes,
    p50Ms: z.p50Ms,
    p99Ms: z.p99Ms,
    frozenP50Ms: f.p50Ms,
    frozenP99Ms: f.p99Ms,
    baselineP50Ms: b.p50Ms,
    baselineP99Ms: b.p99Ms,
    isolation: p.runtime.isolation,
    zeroSamplesMs: zero.map((x) => round(x)),
    frozenSamplesMs: frozen.map((x) => round(x)),
    baselineSamplesMs: byHand.map((x) => round(x)),
  };
}

/** Runs `action` and resolves once the route feed has published a route matching `done`. */
async function forceState(p: TestPlatform, appId: string, done: (r: AppRoute) => boolean, action: () => Promise<void>): Promise<void> {
  let off = () => {};
  let timer: NodeJS.Timeout | undefined;
  const published = new Promise<void>((resolve, reject) => {
    off = p.platform.feed.subscribe((e) => {
      if (e.kind === "upsert" && e.route.appId === appId && done(e.route)) resolve();
    });
    timer = setTimeout(() => reject(new Error(`app ${appId} did not reach the wanted state within 30 s`)), 30_000);
  });
  try {
    await action();
    await published;
  } finally {
    off();
    clearTimeout(timer);
  }
  // The same event travels to the router over the feed's SSE stream; give it time to land.
  await sleep(100);
}
