import { describe, expect, it, vi } from "vitest";
import { RouteTable, normalizeHost, type AppRoute } from "./routes.ts";

const scale = { min: 0, max: 3, targetConcurrency: 10, idleFreezeMs: 0, idleStopMs: 0 };
const route = (over: Partial<AppRoute> = {}): AppRoute => ({
  appId: "a1", appName: "shop", hosts: ["Shop.Example.com"], instances: [{ name: "web.1", host: "127.0.0.1", port: 5001 }],
  maintenance: false, timeoutMs: 30_000, scale, ...over,
});

describe("normalizeHost", () => {
  it("lowercases and strips port and trailing dot", () => {
    expect(normalizeHost("Shop.Example.COM:8080")).toBe("shop.example.com");
    expect(normalizeHost("shop.example.com.")).toBe("shop.example.com");
    expect(normalizeHost("[::1]:80")).toBe("[::1]");
    expect(normalizeHost("::1")).toBe("::1");
    expect(normalizeHost(undefined)).toBe("");
  });
});

describe("RouteTable", () => {
  it("looks up by host, name and id", () => {
    const t = new RouteTable();
    t.upsert(route());
    expect(t.byHost("SHOP.example.com:443")?.appId).toBe("a1");
    expect(t.byName("shop")?.appId).toBe("a1");
    expect(t.get("a1")?.appName).toBe("shop");
    expect(t.byHost("other.example.com")).toBeUndefined();
  });

  it("reindexes on upsert and forgets on remove, notifying listeners", () => {
    const t = new RouteTable();
    const heard = vi.fn();
    t.subscribe(heard);
    t.upsert(route());
    t.upsert(route({ hosts: ["new.example.com"] }));
    expect(t.byHost("shop.example.com")).toBeUndefined();
    expect(t.byHost("new.example.com")?.appId).toBe("a1");
    t.remove("a1");
    expect(t.byName("shop")).toBeUndefined();
    expect(heard.mock.calls).toEqual([["a1"], ["a1"], ["a1"]]);
  });

  it("does not let one app's removal drop a host another app claimed", () => {
    const t = new RouteTable();
    t.upsert(route());
    t.upsert(route({ appId: "a2", appName: "shop2", hosts: ["shop.example.com"] }));
    t.remove("a1");
    expect(t.byHost("shop.example.com")?.appId).toBe("a2");
  });

  it("replace swaps everything and notifies old and new apps", () => {
    const t = new RouteTable();
    t.upsert(route());
    const heard: string[] = [];
    t.subscribe((id) => heard.push(id));
    t.replace([route({ appId: "b", appName: "blog", hosts: [] })]);
    expect(t.get("a1")).toBeUndefined();
    expect(t.byName("blog")?.appId).toBe("b");
    expect(heard.sort()).toEqual(["a1", "b"]);
  });

  it("counts only ready instances and reports the frozen tier", () => {
    const t = new RouteTable();
    t.upsert(route({ instances: [
      { name: "web.1", host: "127.0.0.1", port: 1, state: "up" },
      { name: "web.2", host: "127.0.0.1", port: 2, state: "starting" },
      { name: "web.3", host: "127.0.0.1", port: 3 },
    ] }));
    expect(t.readyInstances("a1").map((i) => i.name)).toEqual(["web.1", "web.3"]);
    expect(t.coldTier("a1")).toBe("zero");
    t.upsert(route({ instances: [{ name: "web.1", host: "127.0.0.1", port: 1, state: "frozen" }] }));
    expect(t.readyCount("a1")).toBe(0);
    expect(t.coldTier("a1")).toBe("frozen");
  });

  it("rejects malformed routes naming the field", () => {
    const t = new RouteTable();
    expect(() => t.upsert(route({ instances: [{ name: "web.1", host: "h", port: 70000 }] }))).toThrow(/instances\[0\]\.port/);
    expect(() => t.upsert(route({ scale: { ...scale, targetConcurrency: 0 } }))).toThrow(/targetConcurrency/);
    expect(() => t.upsert(route({ scale: { ...scale, min: 5, max: 2 } }))).toThrow(/scale\.max/);
  });
});
