/**
 * git push to running app, end to end on real components: git smart HTTP with a
 * pre-receive hook, the builder with the Node.js buildpack, OCI images, the local
 * runtime (runc where it works) and the router.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startPlatform, type TestPlatform } from "../harness/platform.ts";

let p: TestPlatform;
let owner: { token: string; email: string; id: string };
const APP = "push-demo";

const server = (body: string) => `
const http = require("node:http");
http.createServer((req, res) => {
  if (req.url === "/built") return res.end(require("node:fs").existsSync("built.txt") ? require("node:fs").readFileSync("built.txt") : "no build output");
  if (req.url === "/env") return res.end(JSON.stringify({ greeting: process.env.GREETING ?? null, port: process.env.PORT, dyno: process.env.DYNO }));
  res.end(${JSON.stringify(body)});
}).listen(process.env.PORT);
`;
const packageJson = JSON.stringify({ name: "push-demo", version: "1.0.0", private: true, engines: { node: "24.x" }, scripts: { start: "node server.js" } });

let repo: string;

beforeAll(async () => {
  p = await startPlatform();
  owner = await p.user();
  expect((await p.call("POST", "/apps", { token: owner.token, body: { name: APP } })).status).toBe(201);
  repo = await p.repo({ "package.json": packageJson, "package-lock.json": JSON.stringify({ name: "push-demo", version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name: "push-demo", version: "1.0.0" } } }), "server.js": server("hello v1"), Procfile: "web: node server.js\n" });
  await p.git(repo, ["remote", "add", "platform", p.remote(APP, owner.token)]);
}, 120_000);
afterAll(async () => p?.close(), 60_000);

async function commit(file: string, content: string, message: string) {
  const { writeFile } = await import("node:fs/promises");
  await writeFile(`${repo}/${file}`, content);
  await p.git(repo, ["add", "-A"]);
  await p.git(repo, ["-c", "user.email=t@example.test", "-c", "user.name=t", "commit", "-qm", message]);
}

describe("git push", () => {
  test("a first push builds, releases and serves the app through the router, streaming remote: lines", async () => {
    const push = await p.git(repo, ["push", "platform", "main"]);
    const out = push.stdout + push.stderr;
    expect(push.code, out).toBe(0);
    expect(out).toContain("remote: -----> Building on the Node.js buildpack");
    expect(out).toContain("remote: -----> Launching...");
    expect(out).toMatch(/remote:\s+Released v2/);
    expect(out).toContain(`remote:        http://${APP}.localhost/ deployed to Berth`);
    const res = await p.get(`${APP}.localhost`);
    expect(res.status).toBe(200);
    expect(res.text).toBe("hello v1");
    expect(res.headers["via"]).toContain("berth");
    const releases = await p.call("GET", `/apps/${APP}/releases`, { token: owner.token });
    expect(releases.body.map((r: any) => [r.version, r.status])).toEqual([[1, "succeeded"], [2, "succeeded"]]);
    const dynos = await p.call("GET", `/apps/${APP}/dynos`, { token: owner.token });
    expect(dynos.body).toEqual([expect.objectContaining({ name: "web.1", type: "web", state: "up" })]);
  }, 120_000);

  test("a one-line change goes live on the next push", async () => {
    await commit("server.js", server("hello v2"), "v2");
    const push = await p.git(repo, ["push", "platform", "main"]);
    expect(push.code, push.stderr).toBe(0);
    expect(push.stderr).toMatch(/remote:\s+Released v3/);
    expect((await p.get(`${APP}.localhost`)).text).toBe("hello v2");
  }, 120_000);

  test("config vars reach the app through a new release", async () => {
    const set = await p.call("PATCH", `/apps/${APP}/config-vars`, { token: owner.token, body: { GREETING: "ahoy" } });
    expect(set.status).toBe(200);
    const deadline = Date.now() + 30_000;
    let env: any = {};
    while (Date.now() < deadline) {
      const r = await p.get(`${APP}.localhost`, "/env");
      env = JSON.parse(r.text || "{}");
      if (env.greeting === "ahoy") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(env).toMatchObject({ greeting: "ahoy", dyno: "web.1" });
    expect(Number(env.port)).toBeGreaterThan(0);
  }, 60_000);

  test("a build sees the config vars set before it started, and the build log names only their count", async () => {
    const withBuild = JSON.stringify({ ...JSON.parse(packageJson), scripts: { start: "node server.js", build: `node -e "require('fs').writeFileSync('built.txt', 'built with ' + process.env.GREETING)"` } });
    await commit("package.json", withBuild, "build script reads a config var");
    const push = await p.git(repo, ["push", "platform", "main"]);
    expect(push.code, push.stderr).toBe(0);
    expect(push.stderr).toMatch(/remote:\s+Build-time config vars: 1 \(config version \d+\)/);
    expect(push.stderr).not.toContain("ahoy");
    expect((await p.get(`${APP}.localhost`, "/built")).text).toBe("built with ahoy");
  }, 120_000);

  test("rollback serves the old build again without a rebuild", async () => {
    const rb = await p.call("POST", `/apps/${APP}/releases`, { token: owner.token, body: { release: 2 } });
    expect(rb.status).toBe(201);
    const deadline = Date.now() + 30_000;
    let body = "";
    while (Date.now() < deadline && body !== "hello v1") {
      body = (await p.get(`${APP}.localhost`)).text;
      if (body !== "hello v1") await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe("hello v1");
  }, 60_000);

  test("a release that never listens fails, the push is rejected and the old release keeps serving", async () => {
    const before = (await p.get(`${APP}.localhost`)).text;
    await commit("Procfile", "web: node -e 'setInterval(() => {}, 1000)'\n", "broken");
    const push = await p.git(repo, ["push", "platform", "main"]);
    expect(push.code).not.toBe(0);
    expect(push.stderr).toMatch(/remote:\s+!\s+Release v\d+ failed/);
    expect(push.stderr).toContain("pre-receive hook declined");
    expect((await p.get(`${APP}.localhost`)).text).toBe(before);
    await p.git(repo, ["reset", "-q", "--hard", "HEAD~1"]);
  }, 120_000);

  test("a failing build rejects the push and leaves the branch where it was", async () => {
    const before = (await p.git(repo, ["ls-remote", "platform", "refs/heads/main"])).stdout.split(/\s/)[0];
    await commit("package.json", "{ this is not json", "broken json");
    const push = await p.git(repo, ["push", "platform", "main"]);
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain("Push rejected, failed to compile app.");
    const after = (await p.git(repo, ["ls-remote", "platform", "refs/heads/main"])).stdout.split(/\s/)[0];
    expect(after).toBe(before);
    await p.git(repo, ["reset", "-q", "--hard", "HEAD~1"]);
  }, 120_000);

  test("pushing another branch is refused with a clear message", async () => {
    const push = await p.git(repo, ["push", "platform", "main:feature"]);
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain("Pushing to refs/heads/feature is not supported");
  }, 60_000);
});

describe("git access control", () => {
  test("pushes without a token, with a bad token, or to another team's app are refused", async () => {
    const url = `${p.apiUrl}/${APP}.git`;
    const anon = await p.git(repo, ["push", url, "main"]);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toMatch(/Authentication failed|could not read Username|401/);
    const bad = await p.git(repo, ["push", url.replace("http://", "http://x:berth_wrong-token-123456@"), "main"]);
    expect(bad.code).not.toBe(0);
    const stranger = await p.user();
    const other = await p.git(repo, ["push", p.remote(APP, stranger.token), "main"]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/not found|404/i);
  }, 60_000);

  test("a viewer may clone but not push", async () => {
    const viewer = await p.user();
    expect((await p.call("POST", "/teams", { token: owner.token, body: { name: "push-team" } })).status).toBe(201);
    await p.call("PUT", "/teams/push-team/members", { token: owner.token, body: { email: viewer.email, role: "viewer" } });
    expect((await p.call("PATCH", `/teams/apps/${APP}`, { token: owner.token, body: { owner: "push-team" } })).status).toBe(200);
    const { mkdtemp } = await import("node:fs/promises");
    const cloneDir = await mkdtemp(`${p.dir}/clone-`);
    const clone = await p.git(cloneDir, ["clone", "-q", p.remote(APP, viewer.token), "c"]);
    expect(clone.code, clone.stderr).toBe(0);
    const push = await p.git(`${cloneDir}/c`, ["push", "origin", "HEAD:main"]);
    expect(push.code).not.toBe(0);
    expect(push.stderr).toMatch(/403|viewer/);
  }, 60_000);
});

describe("scale to zero through the router", () => {
  test("an app stopped to zero wakes on the next request, and the cold start is recorded and shown", async () => {
    // The app was transferred to push-team above; the owner is its admin.
    const app = (await p.call("GET", `/apps/${APP}`, { token: owner.token })).body;
    await p.platform.scaling.scaleWeb(app.id, 0);
    await expect.poll(async () => (await p.runtime.list(app.id)).filter((i) => i.type === "web").length, { timeout: 15_000 }).toBe(0);
    const res = await p.get(`${APP}.localhost`);
    expect(res.status).toBe(200);
    await expect.poll(async () => (await p.call("GET", `/apps/${APP}/cold-starts`, { token: owner.token })).body.length, { timeout: 10_000 }).toBeGreaterThan(0);
    const cold = (await p.call("GET", `/apps/${APP}/cold-starts`, { token: owner.token })).body[0];
    expect(cold.tier).toBe("zero");
    expect(cold.duration_ms).toBeGreaterThan(0);
  }, 60_000);

  test("a frozen app thaws on the next request", async () => {
    const app = (await p.call("GET", `/apps/${APP}`, { token: owner.token })).body;
    await p.platform.scaling.freeze(app.id);
    await expect.poll(async () => (await p.runtime.list(app.id)).some((i) => i.state === "frozen"), { timeout: 10_000 }).toBe(true);
    // The router learns of the freeze through the route feed; a request sent before that would reach a suspended process.
    await expect.poll(() => p.routes.coldTier(app.id), { timeout: 10_000 }).toBe("frozen");
    expect((await p.get(`${APP}.localhost`)).status).toBe(200);
    expect((await p.runtime.list(app.id)).every((i) => i.state !== "frozen")).toBe(true);
  }, 60_000);
});

describe("faults", () => {
  test("the router restarted under load restores its routes from the control plane and serves again", async () => {
    const app = (await p.call("GET", `/apps/${APP}`, { token: owner.token })).body;
    let ok = 0;
    let failed = 0;
    let stop = false;
    const deadline = Date.now() + 20_000;
    const load = async () => {
      while (!stop && Date.now() < deadline) {
        try {
          const r = await p.get(`${APP}.localhost`);
          if (r.status === 200) ok++;
          else failed++;
        } catch {
          failed++; // connection refused while no router listens
        }
      }
    };
    const workers = Array.from({ length: 4 }, load);
    await expect.poll(() => ok, { timeout: 10_000 }).toBeGreaterThan(20);
    await p.restartRouter();
    expect(p.routes.get(app.id)?.appName).toBe(APP);
    const okBefore = ok;
    await expect.poll(() => ok, { timeout: 10_000 }).toBeGreaterThan(okBefore + 20);
    stop = true;
    await Promise.all(workers);
    expect((await p.get(`${APP}.localhost`)).status).toBe(200);
    expect(failed).toBeLessThan(ok);
  }, 60_000);
});

describe("concurrent pushes", () => {
  test("two pushes to one app take turns: the second is refused clearly because the branch moved, and only one release is made", async () => {
    const { mkdtemp, writeFile } = await import("node:fs/promises");
    const dirA = await mkdtemp(`${p.dir}/race-a-`);
    const dirB = await mkdtemp(`${p.dir}/race-b-`);
    await p.git(dirA, ["clone", "-q", p.remote(APP, owner.token), "r"]);
    await p.git(dirB, ["clone", "-q", p.remote(APP, owner.token), "r"]);
    await writeFile(`${dirA}/r/server.js`, server("race a"));
    await p.git(`${dirA}/r`, ["-c", "user.email=t@example.test", "-c", "user.name=t", "commit", "-qam", "a"]);
    await writeFile(`${dirB}/r/server.js`, server("race b"));
    await p.git(`${dirB}/r`, ["-c", "user.email=t@example.test", "-c", "user.name=t", "commit", "-qam", "b"]);
    const before = (await p.call("GET", `/apps/${APP}/releases`, { token: owner.token })).body.length;
    const [a, b] = await Promise.all([p.git(`${dirA}/r`, ["push", "origin", "HEAD:main"]), p.git(`${dirB}/r`, ["push", "--force", "origin", "HEAD:main"])]);
    const [won, lost] = a.code === 0 ? [a, b] : [b, a];
    expect(won.code, won.stderr).toBe(0);
    expect(lost.code).not.toBe(0);
    expect(lost.stderr).toContain("main moved while this push waited for another push to this app.");
    const releases = (await p.call("GET", `/apps/${APP}/releases`, { token: owner.token })).body;
    expect(releases.length).toBe(before + 1);
    expect(releases.at(-1).status).toBe("succeeded");
    expect((await p.get(`${APP}.localhost`)).text).toBe(won === a ? "race a" : "race b");
  }, 180_000);
});
