import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CONSOLE_DIR, consoleFile, mountConsole, prefersHtml } from "../../services/api/src/console.ts";

// A web dir with a secret next to it (outside) and a symlink pointing at it.
let dir: string;
let web: string;
let app: Hono;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-console-"));
  web = join(dir, "web");
  await mkdir(join(web, "js"), { recursive: true });
  await writeFile(join(web, "index.html"), "<!doctype html><title>console</title>");
  await writeFile(join(web, "js", "main.js"), "export {};");
  await writeFile(join(web, "app.css"), "body{}");
  await writeFile(join(web, ".env.js"), "secret");
  await writeFile(join(web, "notes.md"), "not served");
  await writeFile(join(dir, "secret.js"), "SECRET");
  await writeFile(join(dir, "package.json"), '{"secret":true}');
  await symlink(join(dir, "secret.js"), join(web, "link.js"));
  app = new Hono();
  app.notFound((c) => c.json({ id: "not_found", message: "The requested API endpoint was not found." }, 404));
  mountConsole(app, web);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe("console files", () => {
  test("serves index.html for /console/, with type, CSP and no-cache", async () => {
    const r = await app.request("/console/");
    expect(r.status).toBe(200);
    expect(r.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
    expect(r.headers.get("Content-Security-Policy")).toMatch(/^default-src 'self'/);
    expect(r.headers.get("Cache-Control")).toBe("no-cache");
    expect(r.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(await r.text()).toContain("<title>console</title>");
  });

  test("content types by extension; /console redirects to /console/", async () => {
    expect((await app.request("/console/js/main.js")).headers.get("Content-Type")).toBe("text/javascript; charset=utf-8");
    expect((await app.request("/console/app.css")).headers.get("Content-Type")).toBe("text/css; charset=utf-8");
    const r = await app.request("/console");
    expect(r.status).toBe(301);
    expect(r.headers.get("Location")).toBe("/console/");
  });

  test("revalidation answers 304 for an unchanged file", async () => {
    const first = await app.request("/console/app.css");
    const etag = first.headers.get("ETag")!;
    expect(etag).toBeTruthy();
    const again = await app.request("/console/app.css", { headers: { "If-None-Match": etag } });
    expect(again.status).toBe(304);
  });

  test.each([
    "/console/../package.json",
    "/console/%2e%2e/package.json",
    "/console/%2E%2E/secret.js",
    "/console/%2e%2e%2fsecret.js",
    "/console/..%2fsecret.js",
    "/console/js/..%2f..%2fsecret.js",
    "/console/..%5csecret.js",
    "/console/%2Fetc%2Fpasswd",
    "/console/%2Fetc%2Fhosts.js",
    "/console//etc/passwd",
    "/console/%00.js",
    "/console/%E0%A4%A.js",
    "/console/.env.js",
    "/console/link.js",
    "/console/notes.md",
    "/console/js",
    "/console/missing.js",
  ])("%s is 404", async (path) => {
    const r = await app.request(path);
    expect(r.status).toBe(404);
    expect(await r.text()).not.toMatch(/SECRET|"secret"/);
  });

  test("absolute paths to a file outside are 404", async () => {
    expect((await app.request(`/console/${encodeURIComponent(join(dir, "secret.js"))}`)).status).toBe(404);
    expect((await app.request(`/console/${join(dir, "secret.js")}`)).status).toBe(404);
  });

  test("unnormalised paths (as a raw socket may send them) cannot climb either", async () => {
    expect(await consoleFile(web, "/console/../secret.js")).toBeNull();
    expect(await consoleFile(web, "/console/js/../../package.json")).toBeNull();
    expect(await consoleFile(web, "/console/./index.html")).toBeNull();
    expect(await consoleFile(web, "/console/js/main.js")).toMatchObject({ type: "text/javascript; charset=utf-8" });
  });

  test("GET and HEAD only; other methods get the app's 404", async () => {
    const head = await app.request("/console/index.html", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
    for (const method of ["POST", "PUT", "DELETE"]) {
      const r = await app.request("/console/index.html", { method });
      expect(r.status).toBe(404);
      expect(await r.json()).toMatchObject({ id: "not_found" });
    }
  });

  test("mounts as middleware: no GET routes join the API's route list", () => {
    expect(app.routes.filter((r) => r.method !== "ALL")).toEqual([]);
  });

  test("the real web/ has the console's entry files", async () => {
    expect(await consoleFile(CONSOLE_DIR.replace(/\/$/, ""), "/console/")).toMatchObject({ type: "text/html; charset=utf-8" });
    expect(await consoleFile(CONSOLE_DIR, "/console/js/main.js")).not.toBeNull();
    expect(await consoleFile(CONSOLE_DIR, "/console/app.css")).not.toBeNull();
    expect(await consoleFile(CONSOLE_DIR, "/console/tsconfig.json")).toBeNull();
  });
});

describe("GET /", () => {
  test("browsers are sent to the console", async () => {
    const r = await app.request("/", { headers: { Accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" } });
    expect(r.status).toBe(302);
    expect(r.headers.get("Location")).toBe("/console/");
  });

  test.each([undefined, "*/*", "application/vnd.heroku+json; version=3", "application/json, text/html;q=0.5", "text/html;q=0"])("API clients (Accept %s) get the JSON 404", async (accept) => {
    const r = await app.request("/", accept ? { headers: { Accept: accept } } : {});
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ id: "not_found" });
  });

  test("prefersHtml ranks by q, then by order", () => {
    expect(prefersHtml("text/html")).toBe(true);
    expect(prefersHtml("application/json;q=0.9, text/html")).toBe(true);
    expect(prefersHtml("application/json, text/html")).toBe(false);
    expect(prefersHtml("text/*")).toBe(false);
    expect(prefersHtml("")).toBe(false);
  });
});
