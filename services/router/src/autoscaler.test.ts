import { ManualClock, silentLogger } from "@berth/core";
import { describe, expect, it } from "vitest";
import { Activator, type ReadyWatch } from "./activator.ts";
import { Autoscaler, type Waker } from "./autoscaler.ts";
import type { ScalePolicy } from "./routes.ts";

const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function setup(policy: Partial<ScalePolicy> = {}, opts: { ready?: number; canFreeze?: boolean } = {}) {
  const clock = new ManualClock(1_000_000);
  const ready = new Map([["a", opts.ready ?? 1]]);
  const log: string[] = [];
  const scales: number[] = [];
  const waker: Waker = {
    wake: async (id) => void log.push(`wake ${id}`),
    stop: async (id) => void log.push(`stop ${id}`),
    ...(opts.canFreeze === false ? {} : { freeze: async (id: string) => void log.push(`freeze ${id}`) }),
  };
  const scale: ScalePolicy = { min: 0, max: 20, targetConcurrency: 1, idleFreezeMs: 0, idleStopMs: 0, ...policy };
  const listeners = new Set<(id: string) => void>();
  const table: ReadyWatch & { routes(): { appId: string; scale: ScalePolicy }[] } = {
    routes: () => [{ appId: "a", scale }],
    readyCount: (id) => ready.get(id) ?? 0,
    has: () => true,
    coldTier: () => "zero",
    subscribe: (l) => (listeners.add(l), () => listeners.delete(l)),
  };
  const as = new Autoscaler({
    clock, logger: silentLogger, waker, source: table,
    scaler: { scale: (id, n) => { scales.push(n); ready.set(id, n); for (const l of listeners) l(id); } },
  });
  as.start();
  let inFlight = 0;
  /** Hold exactly n requests in flight from now on. */
  const load = (n: number) => {
    while (inFlight < n) (as.requestStarted("a"), inFlight++);
    while (inFlight > n) (as.requestEnded("a"), inFlight--);
  };
  const seconds = (s: number) => clock.advance(s * 1000);
  return { clock, as, table, ready, log, scales, load, seconds, last: () => scales.at(-1) };
}

describe("Autoscaler (KPA)", () => {
  it("ramps up to ceil(concurrency / target) without panicking", () => {
    const t = setup({}, { ready: 2 });
    t.load(3);
    t.seconds(1);
    expect(t.scales).toEqual([3]);
    t.load(5);
    t.seconds(3);
    expect(t.last()).toBe(5);
    expect(t.as.status("a")?.panicking).toBe(false);
  });

  it("never scales past max", () => {
    const t = setup({ max: 4 }, { ready: 2 });
    t.load(50);
    t.seconds(5);
    expect(Math.max(...t.scales)).toBe(4);
  });

  it("does not scale down before it has a full stable window of history", () => {
    const t = setup({}, { ready: 5 });
    t.seconds(30);
    expect(t.scales).toEqual([]);
    t.seconds(31);
    expect(t.scales).toEqual([1]);
  });

  it("scales down gradually and only once the stable window has seen the drop", () => {
    const t = setup({}, { ready: 4 });
    t.load(4);
    t.seconds(60);
    expect(t.scales).toEqual([]);
    t.load(1);
    t.seconds(10);
    expect(t.scales).toEqual([]); // 60 s average still (50*4 + 10*1)/60 = 3.5
    t.seconds(50);
    expect(t.last()).toBe(1);
    expect(t.scales).toEqual([...t.scales].sort((a, b) => b - a));
    expect(t.as.status("a")?.panicking).toBe(false);
  });

  it("enters panic on a burst >= 2x capacity, holds capacity, and leaves after a calm stable window", () => {
    const t = setup({}, { ready: 1 });
    t.seconds(60); // history at zero
    t.load(10);
    t.seconds(2);
    expect(t.as.status("a")?.panicking).toBe(true);
    t.seconds(8);
    const peak = Math.max(...t.scales);
    expect(peak).toBe(10);
    // Burst over: the panic keeps capacity for a stable window after the last over-threshold tick.
    t.load(0);
    const before = t.scales.length;
    t.seconds(50);
    expect(t.scales.length).toBe(before);
    expect(t.as.status("a")?.panicking).toBe(true);
    t.seconds(15);
    expect(t.as.status("a")?.panicking).toBe(false);
    t.seconds(10);
    expect(t.last()).toBe(1);
  });

  it("respects min while idle and never sleeps an app with min > 0", () => {
    const t = setup({ min: 2, idleFreezeMs: 1000, idleStopMs: 2000 }, { ready: 2 });
    t.seconds(120);
    expect(t.log).toEqual([]);
    expect(t.scales).toEqual([]);
  });
});

describe("Autoscaler idle tiers", () => {
  it("freezes after idleFreezeMs, then stops after idleStopMs", async () => {
    const t = setup({ idleFreezeMs: 30_000, idleStopMs: 120_000 });
    t.load(1);
    t.seconds(5);
    t.load(0);
    t.seconds(29);
    expect(t.log).toEqual([]);
    t.seconds(2);
    await flush();
    expect(t.log).toEqual(["freeze a"]);
    expect(t.as.asleep("a")).toBe("frozen");
    t.seconds(90);
    await flush();
    expect(t.log).toEqual(["freeze a", "stop a"]);
    expect(t.as.asleep("a")).toBe("zero");
    expect(t.as.status("a")?.desired).toBe(0);
    expect(t.scales).toEqual([]);
  });

  it("goes straight to stop when the runtime cannot freeze", async () => {
    const t = setup({ idleFreezeMs: 10_000, idleStopMs: 20_000 }, { canFreeze: false });
    t.seconds(21);
    await flush();
    expect(t.log).toEqual(["stop a"]);
  });

  it("a request during freeze thaws the app and restarts the idle clock", async () => {
    const t = setup({ idleFreezeMs: 10_000, idleStopMs: 60_000 });
    const colds: [string, number, string][] = [];
    const act = new Activator({ table: t.table, waker: t.as, clock: t.clock, logger: silentLogger, onColdStart: (...a) => colds.push(a) });
    t.seconds(11);
    await flush();
    expect(t.as.asleep("a")).toBe("frozen");
    expect(act.isReady("a")).toBe(false); // instances listed, but frozen by us

    t.clock.advance(500);
    t.as.requestStarted("a");
    let forwarded = false;
    const held = act.wait("a").then(() => (forwarded = true));
    await flush();
    expect(t.log).toEqual(["freeze a", "wake a"]);
    await held;
    expect(forwarded).toBe(true);
    expect(t.as.asleep("a")).toBeUndefined();
    expect(colds).toEqual([["a", 0, "frozen"]]);
    t.as.requestEnded("a");

    // The original stop deadline (60 s after boot) passes without a stop.
    t.seconds(50);
    await flush();
    expect(t.log).toEqual(["freeze a", "wake a", "freeze a"]);
    t.seconds(11); // 60 s after the request ended
    await flush();
    expect(t.log.at(-1)).toBe("stop a");
  });

  it("coalesces concurrent wakes into one", async () => {
    const t = setup({ idleStopMs: 1000 });
    t.seconds(2);
    await flush();
    expect(t.as.asleep("a")).toBe("zero");
    await Promise.all([t.as.wake("a"), t.as.wake("a"), t.as.wake("a")]);
    expect(t.log.filter((l) => l === "wake a")).toHaveLength(1);
  });
});
