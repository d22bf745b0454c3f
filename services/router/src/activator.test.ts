import { ManualClock, silentLogger } from "@berth/core";
import { describe, expect, it } from "vitest";
import { ActivationError, Activator, type AppWaker, type ReadyWatch } from "./activator.ts";

const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function setup(opts: { maxQueue?: number; maxWaitMs?: number; wake?: () => Promise<void> } = {}) {
  const clock = new ManualClock(0);
  const ready = new Map<string, number>();
  const listeners = new Set<(id: string) => void>();
  const apps = new Set(["a"]);
  const table: ReadyWatch = {
    has: (id) => apps.has(id),
    readyCount: (id) => ready.get(id) ?? 0,
    coldTier: () => "zero",
    subscribe: (l) => (listeners.add(l), () => listeners.delete(l)),
  };
  let wakes = 0;
  const waker: AppWaker = { asleep: () => undefined, wake: opts.wake ?? (async () => void wakes++) };
  const colds: [string, number, string][] = [];
  const act = new Activator({ table, waker, clock, logger: silentLogger, maxQueue: opts.maxQueue ?? 10, maxWaitMs: opts.maxWaitMs ?? 60_000, onColdStart: (...a) => colds.push(a) });
  const setReady = (id: string, n: number) => {
    ready.set(id, n);
    for (const l of listeners) l(id);
  };
  const removeApp = (id: string) => {
    apps.delete(id);
    for (const l of listeners) l(id);
  };
  return { clock, act, setReady, removeApp, colds, wakes: () => wakes };
}

const codeOf = (p: Promise<void>) => p.then(() => "ok", (e: ActivationError) => e.code);

describe("Activator", () => {
  it("holds requests, wakes once, and releases all when an instance is ready", async () => {
    const t = setup();
    const results = [t.act.wait("a"), t.act.wait("a"), t.act.wait("a")].map(codeOf);
    await flush();
    expect(t.wakes()).toBe(1);
    expect(t.act.queued("a")).toBe(3);
    t.clock.advance(1234);
    t.setReady("a", 1);
    expect(await Promise.all(results)).toEqual(["ok", "ok", "ok"]);
    expect(t.colds).toEqual([["a", 1234, "zero"]]);
    expect(t.act.queued("a")).toBe(0);
  });

  it("passes through when the app is ready", async () => {
    const t = setup();
    t.setReady("a", 2);
    await t.act.wait("a");
    expect(t.wakes()).toBe(0);
  });

  it("rejects beyond the queue bound with H11", async () => {
    const t = setup({ maxQueue: 2 });
    const a = codeOf(t.act.wait("a"));
    const b = codeOf(t.act.wait("a"));
    expect(await codeOf(t.act.wait("a"))).toBe("H11");
    t.setReady("a", 1);
    expect([await a, await b]).toEqual(["ok", "ok"]);
  });

  it("times out with H20", async () => {
    const t = setup({ maxWaitMs: 5000 });
    const a = codeOf(t.act.wait("a"));
    t.clock.advance(4999);
    await flush();
    expect(t.act.queued("a")).toBe(1);
    t.clock.advance(1);
    expect(await a).toBe("H20");
    expect(t.act.queued("a")).toBe(0);
  });

  it("drops a waiter whose client went away (H27)", async () => {
    const t = setup();
    const ctl = new AbortController();
    const a = codeOf(t.act.wait("a", ctl.signal));
    ctl.abort();
    expect(await a).toBe("H27");
    expect(t.clock.pendingTimers()).toBe(0);
  });

  it("fails held requests with H10 when the wake fails", async () => {
    const t = setup({ wake: async () => Promise.reject(new Error("boot failed")) });
    expect(await codeOf(t.act.wait("a"))).toBe("H10");
  });

  it("fails held requests when the app is removed", async () => {
    const t = setup();
    const a = codeOf(t.act.wait("a"));
    t.removeApp("a");
    expect(await a).toBe("NO_APP");
  });
});
