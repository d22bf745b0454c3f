// Log in and sign up. Both end in POST /login, which sets the HttpOnly session
// cookie; the console never sees or stores a credential itself.

import { call } from "../api.js";
import { field, h, link, notice, onSubmit } from "../dom.js";

/** @typedef {{ signedIn: (account: import("../main.js").Account) => void }} AuthCtx */

/**
 * @param {HTMLElement} root
 * @param {AuthCtx} ctx
 */
export function loginView(root, ctx) {
  const note = notice();
  const email = field("Email", { type: "email", autocomplete: "username", required: true });
  const password = field("Password", { type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    { class: "card auth", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title" }, "Log in to Berth"),
    note.el,
    email.el,
    password.el,
    h("button", { type: "submit", class: "primary" }, "Log in"),
    h("p", { class: "muted" }, "New to Berth? ", link(["signup"], "Create an account")),
  );
  onSubmit(form, note, async () => {
    const account = await call("POST", "/login", { body: { email: email.input.value.trim(), password: password.input.value }, quiet401: true });
    ctx.signedIn(account);
  });
  root.append(form);
  email.input.focus();
}

/**
 * @param {HTMLElement} root
 * @param {AuthCtx} ctx
 */
export function signupView(root, ctx) {
  const note = notice();
  const email = field("Email", { type: "email", autocomplete: "username", required: true });
  const password = field("Password", { type: "password", autocomplete: "new-password", required: true, "aria-describedby": "password-hint" });
  const form = h(
    "form",
    { class: "card auth", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title" }, "Create your Berth account"),
    note.el,
    email.el,
    password.el,
    h("p", { id: "password-hint", class: "hint" }, "At least 8 characters."),
    h("button", { type: "submit", class: "primary" }, "Sign up"),
    h("p", { class: "muted" }, "Already have an account? ", link(["login"], "Log in")),
  );
  onSubmit(form, note, async () => {
    const body = { email: email.input.value.trim(), password: password.input.value };
    await call("POST", "/users", { body });
    ctx.signedIn(await call("POST", "/login", { body, quiet401: true }));
  });
  root.append(form);
  email.input.focus();
}
