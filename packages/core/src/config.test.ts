import { expect, test } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";

test("embedded defaults need no configuration", () => {
  const c = loadConfig({}, "/srv/berth");
  expect(c.dataDir).toBe("/srv/berth/.berth");
  expect(c.BERTH_API_PORT).toBe(7700);
  expect(c.BERTH_ROUTER_PORT).toBe(7780);
  expect(c.BERTH_BASE_DOMAIN).toBe("localhost");
  expect(c.publicUrl).toBe("http://127.0.0.1:7700");
  expect(c.BERTH_RUNTIME).toBe("local");
});

test("a bad value fails fast, naming the key and the value", () => {
  expect(() => loadConfig({ BERTH_API_PORT: "seventy" }, "/")).toThrow(ConfigError);
  expect(() => loadConfig({ BERTH_API_PORT: "seventy" }, "/")).toThrow(/BERTH_API_PORT="seventy"/);
  expect(() => loadConfig({ DATABASE_URL: "mysql://x" }, "/")).toThrow(/DATABASE_URL="mysql:\/\/x": must be a postgres/);
  expect(() => loadConfig({ BERTH_BLOBSTORE: "s3" }, "/")).toThrow(/BERTH_S3_ENDPOINT/);
});

test("values are typed", () => {
  const c = loadConfig({ BERTH_REGISTRY_INSECURE: "true", BERTH_BUILD_CONCURRENCY: "4", BERTH_ALLOWED_SOURCE_HOSTS: "a.test, b.test" }, "/");
  expect(c.BERTH_REGISTRY_INSECURE).toBe(true);
  expect(c.BERTH_BUILD_CONCURRENCY).toBe(4);
  expect(c.allowedSourceHosts).toEqual(["a.test", "b.test"]);
});
