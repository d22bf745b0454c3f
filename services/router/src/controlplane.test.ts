import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { controlPlaneWaker } from "./controlplane.ts";
import { RouteTable, type AppRoute, type InstanceRoute } from "./routes.ts";

const scale = { min: 0, max: 3, targetConcurrency: 10, idleFreezeMs: 0, idleStopMs: 0 };
const frozen: AppRoute = {
  appId: "a1", appName: "shop", hosts: [], instances: [{ name: "web.1", host: "127.0.0.1", port: 5001, state: "frozen" }],
  maintenance: false, timeoutMs: 30_000, scale,
};
const thawed: InstanceRoute[] = [{ name: "web.1", host: "127.0.0.1", port: 5001, state: "up" }];

/** A stand-in for the API's internal wake endpoint (the real one is covered end to end). */
async function fakeApi(answer: (req: IncomingMessage) => Promise<{ status: number; body: unknown }>): Promise<{ url: string; server: Server; seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    void answer(req).then(({ status, body }) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen };
}

let servers: Server[] = [];
afterEach(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  servers = [];
});

describe("controlPlaneWaker", () => {
  it("puts the instances a wake answers with into the table, so held requests need not wait for the feed", async () => {
    const api = await fakeApi(async () => ({ status: 200, body: { ok: true, instances: thawed } }));
    servers.push(api.server);
    const table = new RouteTable();
    table.upsert(frozen);
    const heard: string[] = [];
    table.subscribe((id) => heard.push(id));
    expect(table.readyCount("a1")).toBe(0);

    await controlPlaneWaker(api.url, "tok", table).wake("a1");

    expect(table.readyCount("a1")).toBe(1);
    expect(table.get("a1")).toMatchObject({ appName: "shop", instances: thawed, timeoutMs: 30_000 });
    expect(heard).toEqual(["a1"]);
    expect(api.seen.map((r) => [r.method, r.url, r.headers.authorization])).toEqual([["POST", "/internal/apps/a1/wake", "Bearer tok"]]);
  });

  it("leaves the table alone when the feed changed the app while the wake was under way (the feed may be newer)", async () => {
    const table = new RouteTable();
    table.upsert(frozen);
    const fromFeed: AppRoute = { ...frozen, instances: [{ name: "web.1", host: "127.0.0.1", port: 5002, state: "up" }] };
    const api = await fakeApi(async () => {
      table.upsert(fromFeed); // a deploy's route arrives over the feed before the wake's answer
      return { status: 200, body: { ok: true, instances: thawed } };
    });
    servers.push(api.server);

    await controlPlaneWaker(api.url, "tok", table).wake("a1");

    expect(table.get("a1")?.instances).toEqual(fromFeed.instances);
  });

  it("rejects with the API's answer when the wake fails, and changes nothing", async () => {
    const api = await fakeApi(async () => ({ status: 409, body: { id: "conflict", message: "The app has no web dynos" } }));
    servers.push(api.server);
    const table = new RouteTable();
    table.upsert(frozen);

    await expect(controlPlaneWaker(api.url, "tok", table).wake("a1")).rejects.toThrow(/answered 409.*no web dynos/);
    expect(table.get("a1")?.instances).toEqual(frozen.instances);
  });
});
