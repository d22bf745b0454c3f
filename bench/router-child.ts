/**
 * A Berth router in a process of its own (as in production: one event loop, like one
 * nginx worker), driven by the bench over IPC. Built with createRouter on a RouteTable
 * the bench fills directly, instead of the control plane's feed.
 *
 *   {cmd: "start", appPort?, host?}  → {port}       listen; route `host` to 127.0.0.1:appPort
 *   {cmd: "fill", n}                 → {size}       add n more apps (one custom domain, one instance each)
 *   {cmd: "memory"}                  → {rss, heap}  after a full GC (run with --expose-gc)
 */
import { silentLogger } from "@berth/core";
import { RouteTable, createRouter, type AppRoute, type Router } from "@berth/router";

type Msg = { id: number; cmd: "start"; appPort?: number; host?: string } | { id: number; cmd: "fill"; n: number } | { id: number; cmd: "memory" };

const table = new RouteTable();
let router: Router | undefined;
let filled = 0;
// Access lines are formatted for every request, as in production; the production
// reporter batches them to the API, here they are counted and dropped.
let accessLines = 0;

const scale = { min: 1, max: 10, targetConcurrency: 100, idleFreezeMs: 0, idleStopMs: 0 };

function route(appId: string, name: string, hosts: string[], port: number): AppRoute {
  return { appId, appName: name, hosts, instances: [{ name: "web.1", host: "127.0.0.1", port }], maintenance: false, timeoutMs: 30_000, scale };
}

async function handle(m: Msg): Promise<unknown> {
  switch (m.cmd) {
    case "start": {
      router = createRouter({
        table,
        waker: { wake: async () => {}, stop: async () => {} },
        scaler: { scale: () => {} },
        logger: silentLogger,
        baseDomain: "localhost",
        onAccessLog: () => {
          accessLines++;
        },
      });
      if (m.appPort && m.host) table.upsert(route("00000000-0000-4000-8000-000000000001", m.host.split(".")[0]!, [m.host], m.appPort));
      const addr = await router.listen(0, "127.0.0.1");
      return { port: addr.port };
    }
    case "fill": {
      for (let i = 0; i < m.n; i++, filled++) {
        const id = `10000000-0000-4000-8000-${String(filled).padStart(12, "0")}`;
        // Instances point at a port nothing listens on: these apps are never requested.
        table.upsert(route(id, `filler-${filled}`, [`www.filler-${filled}.example`], 9));
      }
      return { size: table.size };
    }
    case "memory": {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      const mu = process.memoryUsage();
      return { rss: mu.rss, heap: mu.heapUsed, gc: gc !== undefined, accessLines };
    }
  }
}

process.on("message", (m: Msg) => {
  handle(m).then(
    (result) => process.send!({ id: m.id, ok: true, result }),
    (e: unknown) => process.send!({ id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
  );
});
process.on("disconnect", () => {
  void (router?.close(100) ?? Promise.resolve()).finally(() => process.exit(0));
});
