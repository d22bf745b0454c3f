import { silentLogger } from "@berth/core";
import { describe, expect, it } from "vitest";
import { parseRouterConfig } from "./config.ts";
import { startRouter } from "./main.ts";
import { RouteTable } from "./routes.ts";
import { request } from "./testkit.ts";

describe("router config", () => {
  it("fills defaults", () => {
    const c = parseRouterConfig({});
    expect(c).toMatchObject({ host: "127.0.0.1", port: 7780, baseDomain: "localhost", proto: "http" });
    expect(c.limits.maxHeaderBytes).toBe(16 * 1024);
    expect(c.autoscale.stableWindowMs).toBe(60_000);
  });

  it("names the key and the bad value", () => {
    expect(() => parseRouterConfig({ port: "http" })).toThrow(/port .*"http"/);
    expect(() => parseRouterConfig({ limits: { maxBodyBytes: -1 } })).toThrow(/limits\.maxBodyBytes .*-1/);
    expect(() => parseRouterConfig({ limits: { maxBodyByte: 1 } })).toThrow(/unknown key limits\.maxBodyByte/);
    expect(() => parseRouterConfig({ limits: { headersTimeoutMs: 5000, requestTimeoutMs: 1000 } })).toThrow(/headersTimeoutMs/);
    expect(() => parseRouterConfig({ proto: "gopher" })).toThrow(/proto/);
  });

  it("starts, serves /healthz on the admin port, and stops", async () => {
    const running = await startRouter({ port: 0, adminPort: 0 }, { table: new RouteTable(), waker: { wake: async () => {}, stop: async () => {} }, logger: silentLogger });
    const port = Number(new URL(running.adminUrl).port);
    expect((await request(port, { host: "x", path: "/healthz" })).body).toBe("ok\n");
    const pub = Number(new URL(running.url).port);
    expect((await request(pub, { host: "nobody.localhost" })).status).toBe(404);
    await running.stop();
  });
});
