import { describe, expect, it } from "vitest";
import { Balancer, instanceKey } from "./balancer.ts";
import type { InstanceRoute } from "./routes.ts";

const inst = (port: number): InstanceRoute => ({ name: `web.${port}`, host: "10.0.0.1", port });

describe("balancer", () => {
  it("picks the instance with the fewest requests in flight, rotating ties", () => {
    const b = new Balancer();
    const [a, c] = [inst(1), inst(2)];
    b.start(instanceKey(a));
    expect(b.pick("app", [a, c])).toBe(c);
    b.start(instanceKey(c));
    b.start(instanceKey(c));
    expect(b.pick("app", [a, c])).toBe(a);
    b.finish(instanceKey(c));
    b.finish(instanceKey(c));
    b.finish(instanceKey(a));
    const picks = new Set([b.pick("app", [a, c]), b.pick("app", [a, c])]);
    expect(picks).toEqual(new Set([a, c]));
    expect(b.outstanding(a)).toBe(0);
  });

  it("skips excluded instances, also when there is only one", () => {
    const b = new Balancer();
    const [a, c] = [inst(1), inst(2)];
    expect(b.pick("app", [a], new Set([instanceKey(a)]))).toBeUndefined();
    expect(b.pick("app", [a])).toBe(a);
    expect(b.pick("app", [a, c], new Set([instanceKey(c)]))).toBe(a);
    expect(b.pick("app", [])).toBeUndefined();
  });

  it("counts by address, so a new route object for the same instance shares the count", () => {
    const b = new Balancer();
    b.start(instanceKey(inst(1)));
    expect(b.outstanding(inst(1))).toBe(1);
    expect(instanceKey(inst(1))).toBe("10.0.0.1:1");
    b.finish(instanceKey(inst(1)));
    expect(b.outstanding(inst(1))).toBe(0);
  });
});
