/**
 * With a registry configured, builds push their images to a real registry
 * (Debian's docker-registry), and a rebuild after a one-line change uploads only
 * what changed: the app layer, the config and the manifest.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startPlatform, type TestPlatform } from "../harness/platform.ts";
import { startRegistry } from "../harness/registry.ts";

const run = promisify(execFile);
let p: TestPlatform;
let registry: Awaited<ReturnType<typeof startRegistry>>;

beforeAll(async () => {
  registry = await startRegistry();
  p = await startPlatform({ registry: registry.host });
}, 120_000);
afterAll(async () => {
  await p?.close();
  await registry?.stop();
}, 60_000);

test("builds are pushed; a rebuild uploads only the app layer, config and manifest", async () => {
  const u = await p.user();
  await p.call("POST", "/apps", { token: u.token, body: { name: "reg-app" } });
  const serverJs = (s: string) => `require("node:http").createServer((q, r) => r.end(${JSON.stringify(s)})).listen(process.env.PORT);`;
  const repo = await p.repo({ "package.json": JSON.stringify({ name: "reg-app", version: "1.0.0", scripts: { start: "node server.js" } }), "server.js": serverJs("one") });
  const first = await p.git(repo, ["push", p.remote("reg-app", u.token), "main"]);
  expect(first.code, first.stderr).toBe(0);
  expect(first.stderr).toMatch(/remote:\s+Uploaded \d+ of \d+ blobs/);
  await writeFile(`${repo}/server.js`, serverJs("two"));
  await p.git(repo, ["-c", "user.email=t@example.test", "-c", "user.name=t", "commit", "-qam", "two"]);
  const second = await p.git(repo, ["push", p.remote("reg-app", u.token), "main"]);
  expect(second.code, second.stderr).toBe(0);
  // Two launch layers, the app layer and the config: only the app layer and the config are new.
  expect(second.stderr).toMatch(/remote:\s+Uploaded 2 of 4 blobs/);
  expect((await p.get("reg-app.localhost")).text).toBe("two");

  const builds = (await p.call("GET", "/apps/reg-app/builds", { token: u.token })).body;
  const image = (await p.db.selectFrom("builds").select("image").where("id", "=", builds.at(-1).id).executeTakeFirstOrThrow()).image as { registryReference: string };
  expect(image.registryReference).toMatch(new RegExp(`^${registry.host.replace(/\./g, "\\.")}/berth/[0-9a-f-]+@sha256:[0-9a-f]{64}$`));
  const { stdout } = await run("skopeo", ["inspect", "--tls-verify=false", `docker://${image.registryReference}`]);
  const inspected = JSON.parse(stdout) as { Layers: string[]; Env: string[] };
  expect(inspected.Layers).toHaveLength(3);
  expect(inspected.Env.some((e) => e.startsWith("PATH=/layers/"))).toBe(true);
}, 240_000);
