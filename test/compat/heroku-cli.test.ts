/**
 * The compatibility test that matters to users: the real Heroku CLI (npm
 * `heroku`, pinned) driving Berth through HEROKU_HOST, against the whole platform.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { herokuCli, heroku } from "../harness/heroku-cli.ts";
import { startPlatform, type TestPlatform } from "../harness/platform.ts";

let p: TestPlatform;
let bin: string;
let env: { apiUrl: string; token: string; home: string };
const APP = "cli-compat";
const h = (...args: string[]) => heroku(bin, args, env);

beforeAll(async () => {
  [bin, p] = await Promise.all([herokuCli(), startPlatform()]);
  const u = await p.user();
  env = { apiUrl: p.apiUrl, token: u.token, home: p.dir };
  // Deploy once with git so dynos, releases and logs exist.
  const created = await h("apps:create", APP);
  expect(created.code, created.out).toBe(0);
  const repo = await p.repo({
    "package.json": JSON.stringify({ name: APP, version: "1.0.0", scripts: { start: "node server.js" } }),
    "server.js": `require("node:http").createServer((q, s) => s.end("v:" + (process.env.GREETING ?? "none"))).listen(process.env.PORT);`,
  });
  const push = await p.git(repo, ["push", p.remote(APP, u.token), "main"]);
  expect(push.code, push.stderr).toBe(0);
}, 600_000);
afterAll(async () => p?.close(), 60_000);

test("apps, apps:info", async () => {
  const apps = await h("apps");
  expect(apps.code, apps.out).toBe(0);
  expect(apps.out).toContain(APP);
  const info = await h("apps:info", "-a", APP);
  expect(info.code, info.out).toBe(0);
  expect(info.out).toContain(`${p.apiUrl}/${APP}.git`);
  expect(info.out).toContain(`http://${APP}.localhost/`);
}, 60_000);

test("config:set makes a release the app sees; config and config:unset", async () => {
  const set = await h("config:set", "GREETING=ahoy", "-a", APP);
  expect(set.code, set.out).toBe(0);
  expect(set.out).toMatch(/v3/);
  const cfg = await h("config", "-a", APP);
  expect(cfg.out).toMatch(/GREETING:\s+ahoy/);
  await expect.poll(async () => (await p.get(`${APP}.localhost`)).text, { timeout: 30_000 }).toBe("v:ahoy");
  const unset = await h("config:unset", "GREETING", "-a", APP);
  expect(unset.code, unset.out).toBe(0);
}, 90_000);

test("releases and releases:rollback", async () => {
  const list = await h("releases", "-a", APP);
  expect(list.code, list.out).toBe(0);
  expect(list.out).toContain("Deploy");
  expect(list.out).toContain("Set GREETING config vars");
  const rb = await h("releases:rollback", "v2", "-a", APP);
  expect(rb.code, rb.out).toBe(0);
  await expect.poll(async () => (await p.get(`${APP}.localhost`)).text, { timeout: 30_000 }).toBe("v:none");
}, 90_000);

test("ps, ps:scale, ps:restart", async () => {
  const ps = await h("ps", "-a", APP);
  expect(ps.code, ps.out).toBe(0);
  expect(ps.out).toMatch(/web\.1: up/);
  const scale = await h("ps:scale", "web=1:standard-1x", "-a", APP);
  expect(scale.code, scale.out).toBe(0);
  expect(scale.out).toMatch(/web at 1:Standard-1X|web at 1:standard-1x/i);
  const restart = await h("ps:restart", "-a", APP);
  expect(restart.code, restart.out).toBe(0);
}, 90_000);

test("domains, domains:add, domains:remove", async () => {
  const add = await h("domains:add", "www.cli-compat.test", "-a", APP);
  expect(add.code, add.out).toBe(0);
  const list = await h("domains", "-a", APP);
  expect(list.out).toContain("www.cli-compat.test");
  expect((await p.get("www.cli-compat.test")).status).toBe(200);
  const rm = await h("domains:remove", "www.cli-compat.test", "-a", APP);
  expect(rm.code, rm.out).toBe(0);
}, 60_000);

test("maintenance:on makes the router answer 503; off restores the app", async () => {
  expect((await h("maintenance:on", "-a", APP)).code).toBe(0);
  await expect.poll(async () => (await p.get(`${APP}.localhost`)).status, { timeout: 10_000 }).toBe(503);
  expect((await h("maintenance", "-a", APP)).out).toContain("on");
  expect((await h("maintenance:off", "-a", APP)).code).toBe(0);
  await expect.poll(async () => (await p.get(`${APP}.localhost`)).status, { timeout: 10_000 }).toBe(200);
}, 60_000);

test("logs shows app, platform and router lines", async () => {
  await p.get(`${APP}.localhost`, "/from-the-cli-test");
  await expect
    .poll(async () => (await h("logs", "-n", "100", "-a", APP)).out, { timeout: 15_000 })
    .toContain('path="/from-the-cli-test"');
}, 60_000);

test("teams and members", async () => {
  const team = await h("teams");
  expect(team.code, team.out).toBe(0);
  await p.call("POST", "/teams", { token: env.token, body: { name: "cli-team" } });
  const members = await h("members", "-t", "cli-team");
  expect(members.code, members.out).toBe(0);
  expect(members.out).toContain("admin");
}, 60_000);

test("apps:destroy", async () => {
  const gone = await h("apps:destroy", APP, "--confirm", APP);
  expect(gone.code, gone.out).toBe(0);
  expect((await p.call("GET", `/apps/${APP}`, { token: env.token })).status).toBe(404);
}, 60_000);
