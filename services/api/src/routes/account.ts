import { z } from "zod";
import { setCookie, deleteCookie } from "hono/cookie";
import { Forbidden, NotFound } from "@berth/core";
import type { ApiDeps } from "../app.ts";
import { SESSION_COOKIE, clientAddress } from "../app.ts";
import { readJson } from "../http/json.ts";
import { accountShape, authorizationShape } from "../http/shapes.ts";
import type { RouteTable } from "../http/routes.ts";
import { isUuid } from "../domain/access.ts";

const signUp = z.object({
  email: z.string().max(320),
  password: z.string(),
  name: z.string().max(200).optional(),
});
const login = z.object({ email: z.string().max(320), password: z.string().max(1024) });
const newAuthorization = z.object({
  description: z.string().max(200).optional(),
  expires_in: z.number().int().positive().max(10 * 365 * 24 * 3600).optional(),
  scope: z.array(z.string()).optional(),
});

export function accountRoutes(t: RouteTable, deps: ApiDeps): void {
  const { accounts, settings } = deps;

  t.post("/users", {
    auth: "none",
    summary: "Sign up",
    status: 201,
    async handler(c) {
      if (!settings.signupOpen) throw new Forbidden("Sign-up is closed on this platform.");
      const body = await readJson(c, signUp);
      const user = await accounts.signUp(body);
      return c.json(accountShape(user), 201);
    },
  });

  t.post("/login", {
    auth: "none",
    summary: "Log in to the console (sets a session cookie)",
    async handler(c) {
      const body = await readJson(c, login);
      const user = await accounts.login(body.email, body.password, clientAddress(c));
      const session = await accounts.createSession(user.id, settings.sessionTtlMs);
      setCookie(c, SESSION_COOKIE, session.token, {
        httpOnly: true,
        sameSite: "Lax",
        secure: settings.secureCookies,
        path: "/",
        expires: session.expiresAt,
      });
      return c.json(accountShape(user));
    },
  });

  t.post("/logout", {
    auth: "user",
    summary: "End the console session",
    async handler(c) {
      const token = c.get("sessionToken");
      if (token) await accounts.deleteSession(token);
      deleteCookie(c, SESSION_COOKIE, { path: "/" });
      return c.json({});
    },
  });

  t.get("/account", {
    auth: "user",
    summary: "Current account",
    async handler(c) {
      return c.json(accountShape(await accounts.getUser(c.get("userId"))));
    },
  });

  t.patch("/account", {
    auth: "user",
    summary: "Update the current account",
    async handler(c) {
      const body = await readJson(c, z.object({ name: z.string().max(200).optional() }));
      return c.json(accountShape(await accounts.updateUser(c.get("userId"), body)));
    },
  });

  t.post("/oauth/authorizations", {
    auth: "password",
    summary: "Create an API token (HTTP Basic email:password, or an existing token)",
    status: 201,
    async handler(c) {
      const body = await readJson(c, newAuthorization);
      const user = await accounts.getUser(c.get("userId"));
      const { row, token } = await accounts.createToken(user.id, { description: body.description, expiresIn: body.expires_in });
      return c.json(authorizationShape(row, user, token, deps.clock.now()), 201);
    },
  });

  t.get("/oauth/authorizations", {
    auth: "user",
    summary: "List API tokens (secrets are never shown again)",
    async handler(c) {
      const user = await accounts.getUser(c.get("userId"));
      const rows = await accounts.listTokens(user.id);
      return c.json(rows.map((r) => authorizationShape(r, user, null, deps.clock.now())));
    },
  });

  t.get("/oauth/authorizations/:id", {
    auth: "user",
    summary: "One API token",
    async handler(c) {
      const user = await accounts.getUser(c.get("userId"));
      const id = c.req.param("id")!;
      const row = isUuid(id) ? await accounts.getToken(user.id, id) : undefined;
      if (!row) throw new NotFound("authorization");
      return c.json(authorizationShape(row, user, null, deps.clock.now()));
    },
  });

  t.delete("/oauth/authorizations/:id", {
    auth: "user",
    summary: "Revoke an API token",
    async handler(c) {
      const user = await accounts.getUser(c.get("userId"));
      const id = c.req.param("id")!;
      const row = isUuid(id) ? await accounts.revokeToken(user.id, id) : undefined;
      if (!row) throw new NotFound("authorization");
      return c.json(authorizationShape(row, user, null, deps.clock.now()));
    },
  });
}
