import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ManualClock } from "@berth/core";
import { startTestApi, type TestApi } from "../harness/api.ts";

let api: TestApi;
const clock = new ManualClock(Date.parse("2026-11-24T00:00:00Z"));
beforeAll(async () => {
  api = await startTestApi({ clock });
});
afterAll(async () => api?.close());

const basic = (user: string, pass: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}` });

describe("sign-up and tokens", () => {
  test("sign-up, token from Basic email:password in Heroku's shape, then GET /account", async () => {
    const signup = await api.call("POST", "/users", { body: { email: "ada@example.test", password: "analytical engine" } });
    expect(signup.status).toBe(201);
    expect(signup.body).toMatchObject({ email: "ada@example.test", verified: true });
    expect(signup.body.password_hash).toBeUndefined();

    const auth = await api.call("POST", "/oauth/authorizations", { headers: basic("ada@example.test", "analytical engine"), body: { description: "laptop" } });
    expect(auth.status).toBe(201);
    expect(auth.body.access_token.token).toMatch(/^berth_[A-Za-z0-9_-]{40,}$/);
    expect(auth.body).toMatchObject({ description: "laptop", scope: ["global"], user: { email: "ada@example.test" } });

    const me = await api.call("GET", "/account", { token: auth.body.access_token.token });
    expect(me.status).toBe(200);
    expect(me.body.email).toBe("ada@example.test");
    expect(me.headers.get("RateLimit-Remaining")).toMatch(/^\d+$/);
    expect(me.headers.get("Request-Id")).toBeTruthy();
  });

  test("tokens are stored only as hashes", async () => {
    const u = await api.user();
    const rows = await api.db.selectFrom("api_tokens").select("token_hash").execute();
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(r.token_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(r.token_hash).not.toContain(u.token);
    }
  });

  test("a token is usable as the Basic password (git, netrc) and as Bearer", async () => {
    const u = await api.user();
    expect((await api.call("GET", "/account", { headers: basic("", u.token) })).status).toBe(200);
    expect((await api.call("GET", "/account", { headers: basic("anything", u.token) })).status).toBe(200);
  });

  test("list and revoke tokens; a revoked token is refused", async () => {
    const u = await api.user();
    const second = await api.call("POST", "/oauth/authorizations", { token: u.token, body: { description: "ci" } });
    expect(second.status).toBe(201);
    const list = await api.call("GET", "/oauth/authorizations", { token: u.token });
    expect(list.body).toHaveLength(2);
    expect(list.body.every((a: any) => a.access_token.token === null)).toBe(true);
    const del = await api.call("DELETE", `/oauth/authorizations/${second.body.id}`, { token: u.token });
    expect(del.status).toBe(200);
    const refused = await api.call("GET", "/account", { token: second.body.access_token.token });
    expect(refused.status).toBe(401);
    expect(refused.body.id).toBe("unauthorized");
    // Another user's token id is simply not found.
    const other = await api.user();
    expect((await api.call("DELETE", `/oauth/authorizations/${list.body[0].id}`, { token: other.token })).status).toBe(404);
  });

  test("expired tokens are refused", async () => {
    const u = await api.user();
    const short = await api.call("POST", "/oauth/authorizations", { token: u.token, body: { expires_in: 60 } });
    expect((await api.call("GET", "/account", { token: short.body.access_token.token })).status).toBe(200);
    clock.advance(61_000);
    expect((await api.call("GET", "/account", { token: short.body.access_token.token })).status).toBe(401);
  });

  test.each([
    ["no credentials", {}],
    ["malformed bearer", { Authorization: "Bearer" }],
    ["unknown token", { Authorization: "Bearer berth_0000000000000000000000000000000000000000000" }],
    ["garbage scheme", { Authorization: "Token abc" }],
  ])("%s answers 401 unauthorized", async (_name, headers) => {
    const r = await api.call("GET", "/account", { headers: headers as Record<string, string> });
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ id: "unauthorized" });
  });

  test("bad sign-ups are refused and create nothing", async () => {
    const before = await api.db.selectFrom("users").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    expect((await api.call("POST", "/users", { body: { email: "not-an-email", password: "long enough pw" } })).body.id).toBe("invalid_params");
    expect((await api.call("POST", "/users", { body: { email: "x@example.test", password: "short" } })).body.id).toBe("invalid_params");
    expect((await api.call("POST", "/users", { body: { email: 42, password: "long enough pw" } })).status).toBe(422);
    expect((await api.call("POST", "/users", { body: "{not json" })).body.id).toBe("bad_request");
    const dup = await api.call("POST", "/users", { body: { email: "ADA@example.test", password: "long enough pw" } });
    expect(dup.status).toBe(409);
    const after = await api.db.selectFrom("users").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  test("oversized bodies are refused with 413", async () => {
    const u = await api.user();
    const r = await api.call("PATCH", "/account", { token: u.token, body: { name: "x".repeat(200 * 1024) } });
    expect(r.status).toBe(413);
    expect(r.body.id).toBe("payload_too_large");
  });

  test("failed logins are rate limited per account", async () => {
    await api.call("POST", "/users", { body: { email: "target@example.test", password: "the real password" } });
    for (let i = 0; i < 5; i++) {
      const r = await api.call("POST", "/oauth/authorizations", { headers: basic("target@example.test", `wrong ${i}`), body: {} });
      expect(r.status).toBe(401);
    }
    const limited = await api.call("POST", "/oauth/authorizations", { headers: basic("target@example.test", "the real password"), body: {} });
    expect(limited.status).toBe(429);
    expect(limited.body.id).toBe("rate_limit");
    clock.advance(15 * 60_000);
    expect((await api.call("POST", "/oauth/authorizations", { headers: basic("target@example.test", "the real password"), body: {} })).status).toBe(201);
  });

  test("unsupported API versions are refused", async () => {
    const u = await api.user();
    const r = await api.call("GET", "/account", { token: u.token, headers: { Accept: "application/vnd.heroku+json; version=2" } });
    expect(r.status).toBe(400);
  });
});

describe("console sessions", () => {
  test("login sets an HttpOnly cookie that authenticates; cross-site writes are refused; logout ends it", async () => {
    await api.call("POST", "/users", { body: { email: "grace@example.test", password: "cobol compiler" } });
    const login = await fetch(`${api.url}/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ email: "grace@example.test", password: "cobol compiler" }) });
    expect(login.status).toBe(200);
    const setCookie = login.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/berth_session=/);
    expect(setCookie).toMatch(/HttpOnly/i);
    const cookie = setCookie.split(";")[0]!;
    const me = await api.call("GET", "/account", { headers: { Cookie: cookie } });
    expect(me.body.email).toBe("grace@example.test");
    const csrf = await api.call("PATCH", "/account", { headers: { Cookie: cookie, Origin: "http://evil.example" }, body: { name: "x" } });
    expect(csrf.status).toBe(403);
    const same = await api.call("PATCH", "/account", { headers: { Cookie: cookie, Origin: api.url }, body: { name: "Grace" } });
    expect(same.status).toBe(200);
    const out = await api.call("POST", "/logout", { headers: { Cookie: cookie, Origin: api.url } });
    expect(out.status).toBe(200);
    expect((await api.call("GET", "/account", { headers: { Cookie: cookie } })).status).toBe(401);
  });

  test("wrong password at login is 401 and sets no cookie", async () => {
    const r = await fetch(`${api.url}/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ email: "grace@example.test", password: "nope nope" }) });
    expect(r.status).toBe(401);
    expect(r.headers.get("set-cookie")).toBeNull();
  });
});

test("sign-up can be closed by config", async () => {
  const closed = await startTestApi({ settings: { signupOpen: false } });
  try {
    const r = await closed.call("POST", "/users", { body: { email: "a@b.test", password: "long enough pw" } });
    expect(r.status).toBe(403);
    expect(r.body.id).toBe("forbidden");
  } finally {
    await closed.close();
  }
});
