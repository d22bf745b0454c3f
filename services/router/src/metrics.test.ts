import { describe, expect, it } from "vitest";
import { RouterMetrics } from "./metrics.ts";

describe("router metrics", () => {
  it("counts requests, latency and H codes through an app's bound series", () => {
    const m = new RouterMetrics();
    const s = m.app("id-1", "shop");
    expect(m.app("id-1", "shop")).toBe(s);
    s.started();
    s.observe(200, 0.004);
    s.observe(204, 0.02);
    s.observe(503, 0.3, "H12");
    const text = m.render([]);
    expect(text).toContain('berth_router_requests_total{app="shop",app_id="id-1",code="2xx"} 2');
    expect(text).toContain('berth_router_requests_total{app="shop",app_id="id-1",code="5xx"} 1');
    expect(text).toContain('berth_router_errors_total{app="shop",app_id="id-1",code="H12"} 1');
    expect(text).toContain('berth_router_request_duration_seconds_bucket{app="shop",app_id="id-1",le="0.005"} 1');
    expect(text).toContain('berth_router_request_duration_seconds_bucket{app="shop",app_id="id-1",le="0.5"} 3');
    expect(text).toContain('berth_router_request_duration_seconds_count{app="shop",app_id="id-1"} 3');
    expect(text).toContain('berth_router_in_flight_requests{app="shop",app_id="id-1"} 1');
    s.ended();
    expect(m.inFlightCount("id-1")).toBe(0);
    expect(m.render([])).not.toContain("berth_router_in_flight_requests{");
  });

  it("starts new series when an app is renamed, keeping its in-flight count", () => {
    const m = new RouterMetrics();
    const old = m.app("id-1", "before");
    old.started();
    const renamed = m.app("id-1", "after");
    expect(renamed).not.toBe(old);
    renamed.observe(200, 0.01);
    old.ended();
    expect(m.inFlightCount("id-1")).toBe(0);
    const text = m.render([]);
    expect(text).toContain('berth_router_requests_total{app="after",app_id="id-1",code="2xx"} 1');
    expect(text).not.toContain('app="before"');
  });

  it("counts unrouted requests and cold starts", () => {
    const m = new RouterMetrics();
    m.unroutedRequest();
    m.unroutedRequest();
    m.coldStart("id-2", "sleepy", "zero", 1500);
    const text = m.render([{ appId: "id-2", appName: "sleepy", readyInstances: 1, instances: 2, queued: 0 }]);
    expect(text).toContain("berth_router_unrouted_requests_total 2");
    expect(text).toContain('berth_router_cold_starts_total{app="sleepy",app_id="id-2",tier="zero"} 1');
    expect(text).toContain('berth_router_instances{app="sleepy",app_id="id-2",state="not_ready"} 1');
  });
});
