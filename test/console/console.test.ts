/**
 * The web console in a real Chromium against the real API (real Postgres). One
 * browser per file; the tests run in order and share one signed-in page, as a
 * person clicking through the console would.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestApi, type TestApi } from "../harness/api.ts";
import { CONSOLE_DIR, mountConsole } from "../../services/api/src/console.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
const EMAIL = `console-${Date.now().toString(36)}@example.test`;
const PASSWORD = "correct horse battery";
const APP = "console-app";
const XSS = "<img src=x onerror=window.__xss=1>";

let api: TestApi;
let profile: string;
let browser: BrowserContext;
let page: Page;
/** Script errors and CSP violations seen by the page: the console must cause none. */
const problems: string[] = [];
let token: string;
let appId: string;
let userId: string;

/** Navigates within the console (hash routes) and waits for the view's heading. */
async function open(hash: string, heading: string | RegExp) {
  await page.goto(`${api.url}/console/${hash}`);
  await page.getByRole("heading", { level: 1, name: heading }).waitFor();
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: run scripts/ensure-deps.sh (apt-get install chromium)`);
  api = await startTestApi();
  mountConsole(api.assembled.app, CONSOLE_DIR);
  profile = await mkdtemp(join(tmpdir(), "berth-chromium-"));
  browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1200, height: 800 } });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`csp: ${m.text()}`);
  });
});

afterAll(async () => {
  await browser?.close();
  await api?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

describe("web console", () => {
  test("/ sends a browser to the console; sign up, log out, log in", async () => {
    await page.goto(`${api.url}/`);
    expect(new URL(page.url()).pathname).toBe("/console/");
    await page.getByRole("heading", { name: "Log in to Berth" }).waitFor();

    await page.getByRole("link", { name: "Create an account" }).click();
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill("short");
    await page.getByRole("button", { name: "Sign up" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("Password must be at least 8 characters.");

    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign up" }).click();
    await page.getByRole("heading", { level: 1, name: "Apps" }).waitFor();
    expect(await page.getByText(EMAIL).isVisible()).toBe(true);

    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in to Berth" }).waitFor();
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill("wrong password");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("Invalid credentials provided.");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { level: 1, name: "Apps" }).waitFor();

    // A token for checking through the API what the console stored.
    const auth = await api.call("POST", "/oauth/authorizations", { headers: { Authorization: `Basic ${Buffer.from(`${EMAIL}:${PASSWORD}`).toString("base64")}` }, body: {} });
    token = auth.body.access_token.token;
    userId = auth.body.user.id;
  });

  test("a bad app name shows the API's message", async () => {
    await page.getByLabel("App name").fill("Bad_Name");
    await page.getByRole("button", { name: "Create app" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("Name must start with a letter");
  });

  test("create an app, see its git remote, see it listed", async () => {
    await page.getByLabel("App name").fill(APP);
    await page.getByRole("button", { name: "Create app" }).click();
    await page.getByRole("heading", { level: 1, name: APP }).waitFor();
    expect(page.url()).toMatch(/#\/apps\/console-app$/);
    expect(await page.getByLabel("Git commands").textContent()).toContain(`git remote add platform ${api.url}/${APP}.git`);
    appId = (await api.call("GET", `/apps/${APP}`, { token })).body.id;

    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Apps" }).click();
    await page.getByRole("link", { name: APP, exact: true }).waitFor();
    expect(await page.getByRole("row", { name: new RegExp(APP) }).textContent()).toContain(`http://${APP}.localhost/`);
    await page.screenshot({ path: "/tmp/berth-console.png", fullPage: true });
  });

  test("maintenance toggle", async () => {
    await open(`#/apps/${APP}`, APP);
    await page.getByLabel("Maintenance mode").check();
    await expect.poll(() => page.getByRole("status").first().textContent()).toContain("Maintenance mode is on.");
    expect((await api.call("GET", `/apps/${APP}`, { token })).body.maintenance).toBe(true);
  });

  test("config vars: set, masked until revealed, stored; an app-controlled string renders as text", async () => {
    await open(`#/apps/${APP}/config`, APP);
    await page.getByLabel("Key").fill("GREETING");
    await page.getByLabel("Value").fill("hello world");
    await page.getByRole("button", { name: "Set", exact: true }).click();
    await page.getByRole("row", { name: /GREETING/ }).waitFor();
    expect(await page.getByText("hello world").count()).toBe(0);

    await page.getByLabel("Key").fill("XSS");
    await page.getByLabel("Value").fill(XSS);
    await page.getByRole("button", { name: "Set", exact: true }).click();
    await page.getByRole("row", { name: /XSS/ }).waitFor();

    await page.getByRole("button", { name: "Reveal values" }).click();
    expect(await page.getByRole("row", { name: /GREETING/ }).locator("code.value").textContent()).toBe("hello world");
    expect(await page.getByRole("row", { name: /XSS/ }).locator("code.value").textContent()).toBe(XSS);
    expect(await page.locator("main img").count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __xss?: unknown }).__xss)).toBeUndefined();

    const stored = await api.call("GET", `/apps/${APP}/config-vars`, { token });
    expect(stored.body).toEqual({ GREETING: "hello world", XSS });

    await page.getByRole("button", { name: "Remove GREETING" }).click();
    await page.getByRole("row", { name: /GREETING/ }).waitFor({ state: "detached" });
    expect((await api.call("GET", `/apps/${APP}/config-vars`, { token })).body).toEqual({ XSS });
  });

  test("domains: add one, see its DNS target", async () => {
    await open(`#/apps/${APP}/domains`, APP);
    await page.getByLabel("Hostname").fill("www.console.example");
    await page.getByRole("button", { name: "Add domain" }).click();
    await page.getByRole("row", { name: /www\.console\.example/ }).waitFor();
    expect(await page.getByRole("status").first().textContent()).toContain(`Point a CNAME record at ${APP}.localhost`);
    const domains = (await api.call("GET", `/apps/${APP}/domains`, { token })).body.map((d: { hostname: string }) => d.hostname);
    expect(domains.sort()).toEqual([`${APP}.localhost`, "www.console.example"]);

    await page.getByLabel("Hostname").fill("not a host");
    await page.getByRole("button", { name: "Add domain" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toBeTruthy();
  });

  test("formation: scale a process type; dynos listed", async () => {
    const { formation } = await import("@berth/api");
    await formation.syncFormation(api.db, appId, [{ type: "web", command: "npm start" }, { type: "worker", command: "node worker.js" }], api.clock);
    api.instances.set(appId, [{ name: "web.1", appId, type: "web", release: 1, state: "up", startedAt: new Date(), restarts: 0, size: "basic" }]);
    await open(`#/apps/${APP}/formation`, APP);
    await page.getByLabel("Quantity of worker dynos").fill("2");
    await page.getByRole("button", { name: "Scale worker" }).click();
    await expect.poll(() => page.getByRole("status").first().textContent()).toContain("Scaled worker to 2.");
    expect((await api.call("GET", `/apps/${APP}/formation/worker`, { token })).body.quantity).toBe(2);
    expect(await page.getByRole("row", { name: /web\.1/ }).textContent()).toContain("up");
  });

  test("releases: roll back; builds: output shown as text", async () => {
    const { releases } = await import("@berth/api");
    const row = await api.db.selectFrom("apps").select(["team_id", "config_version"]).where("id", "=", appId).executeTakeFirstOrThrow();
    const build = await api.db.insertInto("builds").values({ app_id: appId, team_id: row.team_id, user_id: userId, source_url: "https://github.com/a.tgz", source_version: "abc123", status: "succeeded" }).returning("id").executeTakeFirstOrThrow();
    await api.db.insertInto("build_logs").values([
      { build_id: build.id, seq: 0, line: "-----> Node.js app detected" },
      { build_id: build.id, seq: 1, line: `<img src=x onerror=window.__xss=2> installed` },
    ]).execute();
    for (const description of ["Deploy abc123", "Deploy abc123 again"]) {
      const rel = await releases.appendRelease(api.db, { appId, buildId: build.id, configVersion: row.config_version, description, userId });
      await releases.settleRelease(api.db, rel.id, "succeeded", null);
    }

    await open(`#/apps/${APP}/releases`, APP);
    await page.getByRole("button", { name: "Roll back to v2" }).click();
    await page.getByRole("row", { name: /Rollback to v2/ }).waitFor();
    expect(await page.getByRole("status").first().textContent()).toContain("Rolled back to v2: v4 is being deployed.");
    const latest = await api.call("GET", `/apps/${APP}/releases`, { token, headers: { Range: "version ..; order=desc, max=1" } });
    expect(latest.body[0]).toMatchObject({ version: 4, description: "Rollback to v2", slug: { id: build.id } });

    await page.getByRole("link", { name: "Builds" }).click();
    await page.getByRole("button", { name: `Show output of build ${build.id.slice(0, 8)}` }).click();
    const output = page.getByLabel(`Output of build ${build.id.slice(0, 8)}`, { exact: true });
    await expect.poll(() => output.textContent()).toBe(`-----> Node.js app detected\n<img src=x onerror=window.__xss=2> installed\n`);
    expect(await page.locator("main img").count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __xss?: unknown }).__xss)).toBeUndefined();
  });

  test("logs: recent lines, then new ones as they come", async () => {
    api.assembled.logs.push({ appId, at: new Date(), source: "app", dyno: "web.1", text: "listening on 5000" });
    await open(`#/apps/${APP}/logs`, APP);
    const out = page.getByRole("log", { name: "Log output" });
    await expect.poll(() => out.textContent()).toContain("app[web.1]: listening on 5000");
    await expect.poll(() => page.getByText("Live", { exact: true }).count()).toBe(1);
    api.assembled.logs.push({ appId, at: new Date(), source: "router", dyno: "router", text: `at=info path="/${XSS}" status=200` });
    await expect.poll(() => out.textContent()).toContain(`router[router]: at=info path="/${XSS}" status=200`);
    expect(await page.locator("main img").count()).toBe(0);
  });

  test("teams: create one, add a member, create a team app", async () => {
    const mate = await api.user();
    await open("#/teams", "Teams");
    await page.getByLabel("Team name").fill("console-team");
    await page.getByRole("button", { name: "Create team" }).click();
    await page.getByRole("heading", { level: 1, name: "console-team" }).waitFor();
    await page.getByLabel("Member email").fill(mate.email);
    await page.getByRole("button", { name: "Add member" }).click();
    await page.getByRole("row", { name: new RegExp(mate.email) }).waitFor();
    const members = (await api.call("GET", "/teams/console-team/members", { token })).body;
    expect(members.map((m: { email: string; role: string }) => [m.email, m.role]).sort()).toEqual([[EMAIL, "admin"], [mate.email, "member"]].sort());

    await open("#/apps", "Apps");
    await page.getByLabel("App name").fill("team-app");
    await page.getByLabel("Owner").selectOption("console-team");
    await page.getByRole("button", { name: "Create app" }).click();
    await page.getByRole("heading", { level: 1, name: "team-app" }).waitFor();
    expect((await api.call("GET", "/apps/team-app", { token })).body.team).toMatchObject({ name: "console-team" });
  });

  test("log out returns to the login screen, and the session is gone", async () => {
    await open("#/apps", "Apps");
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in to Berth" }).waitFor();
    await page.reload();
    await page.getByRole("heading", { name: "Log in to Berth" }).waitFor();
    expect(await page.getByRole("navigation", { name: "Main" }).isVisible()).toBe(false);
    expect(problems).toEqual([]);
  });

  test("over a raw socket, unnormalised traversal is 404 too", async () => {
    const { hostname, port } = new URL(api.url);
    for (const path of ["/console/../package.json", "/console/js/../../package.json", "/console/%2e%2e/package.json", "/console/..%2fpackage.json"]) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: hostname, port, path, method: "GET" }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
      expect(status, path).toBe(404);
    }
  });
});
