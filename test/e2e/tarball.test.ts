/**
 * Deploying without git: a source tarball uploaded to POST /sources' put_url and
 * built with POST /apps/{app}/builds, Heroku's API flow. Also cancelling a
 * running build, and a malicious tarball.
 */
import { createGzip } from "node:zlib";
import { afterAll, beforeAll, expect, test } from "vitest";
import * as tar from "tar-stream";
import { startPlatform, type TestPlatform } from "../harness/platform.ts";

let p: TestPlatform;
let u: { token: string; email: string; id: string };

beforeAll(async () => {
  p = await startPlatform();
  u = await p.user();
}, 120_000);
afterAll(async () => p?.close(), 60_000);

async function tarball(entries: { name: string; body?: string; type?: "file" | "symlink"; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === "symlink") pack.entry({ name: e.name, type: "symlink", linkname: e.linkname! });
    else pack.entry({ name: e.name, mode: 0o644 }, e.body ?? "");
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack.pipe(createGzip())) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function build(app: string, body: Buffer): Promise<{ id: string; output_stream_url: string }> {
  const src = await p.call("POST", "/sources", { token: u.token });
  expect((await fetch(src.body.source_blob.put_url, { method: "PUT", body: new Uint8Array(body) })).status).toBe(200);
  const b = await p.call("POST", `/apps/${app}/builds`, { token: u.token, body: { source_blob: { url: src.body.source_blob.get_url, version: "tarball" } } });
  expect(b.status, JSON.stringify(b.body)).toBe(201);
  return b.body;
}

const pkg = (scripts: Record<string, string>) => JSON.stringify({ name: "tar-app", version: "1.0.0", scripts: { start: "node server.js", ...scripts } });
const serverJs = `require("node:http").createServer((q, r) => r.end("from a tarball")).listen(process.env.PORT);`;

test("a tarball build streams its output, succeeds, releases and serves", async () => {
  await p.call("POST", "/apps", { token: u.token, body: { name: "tar-app" } });
  const b = await build("tar-app", await tarball([{ name: "app/package.json", body: pkg({}) }, { name: "app/server.js", body: serverJs }]));
  const output = await (await fetch(b.output_stream_url)).text();
  expect(output).toContain("-----> Building on the Node.js buildpack");
  expect(output).toMatch(/-----> Build succeeded in [\d.]+s/);
  expect((await p.call("GET", `/apps/tar-app/builds/${b.id}`, { token: u.token })).body.status).toBe("succeeded");
  await expect.poll(async () => (await p.get("tar-app.localhost")).text, { timeout: 30_000 }).toBe("from a tarball");
  const releases = (await p.call("GET", "/apps/tar-app/releases", { token: u.token })).body;
  expect(releases.at(-1)).toMatchObject({ version: 2, status: "succeeded", slug: { id: b.id } });
}, 180_000);

test("cancelling a running build stops it and fails it as cancelled", async () => {
  const b = await build("tar-app", await tarball([{ name: "package.json", body: pkg({ build: "sleep 120" }) }, { name: "server.js", body: serverJs }]));
  await expect.poll(async () => (await p.db.selectFrom("build_logs").select("line").where("build_id", "=", b.id).execute()).map((r) => r.line).join("\n"), { timeout: 60_000 }).toMatch(/Running build/);
  const started = Date.now();
  expect((await p.call("DELETE", `/apps/tar-app/builds/${b.id}`, { token: u.token })).status).toBe(200);
  await expect.poll(async () => (await p.call("GET", `/apps/tar-app/builds/${b.id}`, { token: u.token })).body.status, { timeout: 20_000 }).toBe("failed");
  expect(Date.now() - started).toBeLessThan(20_000);
  expect((await p.call("GET", `/apps/tar-app/builds/${b.id}`, { token: u.token })).body.failure).toBe("Build cancelled.");
  expect((await p.get("tar-app.localhost")).text).toBe("from a tarball");
}, 120_000);

test("a tarball escaping its directory fails the build with a clear message and releases nothing", async () => {
  const before = (await p.call("GET", "/apps/tar-app/releases", { token: u.token })).body.length;
  const b = await build("tar-app", await tarball([{ name: "package.json", body: pkg({}) }, { name: "../../etc/evil", body: "x" }]));
  await expect.poll(async () => (await p.call("GET", `/apps/tar-app/builds/${b.id}`, { token: u.token })).body.status, { timeout: 30_000 }).toBe("failed");
  const failed = (await p.call("GET", `/apps/tar-app/builds/${b.id}`, { token: u.token })).body;
  expect(failed.failure).toMatch(/\.\.|outside/);
  const symlinked = await build("tar-app", await tarball([{ name: "package.json", body: pkg({}) }, { name: "passwd", type: "symlink", linkname: "/etc/passwd" }]));
  await expect.poll(async () => (await p.call("GET", `/apps/tar-app/builds/${symlinked.id}`, { token: u.token })).body.status, { timeout: 30_000 }).toBe("failed");
  expect((await p.call("GET", "/apps/tar-app/releases", { token: u.token })).body.length).toBe(before);
}, 120_000);
