// The console shell: session check, hash routing, header. Routes look like
// #/apps, #/apps/NAME/config, #/teams/NAME; each view renders into a fresh
// element, so a slow view that finishes after the user moved on writes nowhere.

import { call, whenUnauthorized } from "./api.js";
import { h, replace } from "./dom.js";
import { loginView, signupView } from "./views/auth.js";
import { appsView } from "./views/apps.js";
import { appView } from "./views/app.js";
import { teamsView, teamView } from "./views/teams.js";

/**
 * @typedef {{ id: string, email: string, name: string | null }} Account
 * @typedef {object} Ctx
 * @property {Account} account
 * @property {AbortSignal} signal aborted when the user leaves the view (ends streams)
 * @property {(segments: string[]) => void} go navigates to #/segments…
 * @property {(account: Account) => void} signedIn
 * @typedef {(root: HTMLElement, ctx: Ctx, ...params: string[]) => Promise<void> | void} View
 */

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
const accountEl = /** @type {HTMLElement} */ (document.getElementById("account"));

/** @type {{ account: Account | null, known: boolean, controller: AbortController }} */
const state = { account: null, known: false, controller: new AbortController() };

/** @returns {string[]} */
function route() {
  return location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}

/** @param {string[]} segments */
function go(segments) {
  const hash = "#/" + segments.map(encodeURIComponent).join("/");
  if (location.hash === hash) void render();
  else location.hash = hash;
}

/** @param {Account} account */
function signedIn(account) {
  state.account = account;
  const [first] = route();
  go(first && first !== "login" && first !== "signup" ? route() : ["apps"]);
}

async function logout() {
  try {
    await call("POST", "/logout", { body: {}, quiet401: true });
  } catch {
    // The session may already be gone; the console forgets it either way.
  }
  state.account = null;
  go(["login"]);
}

function renderHeader() {
  const [section] = route();
  nav.hidden = !state.account;
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!state.account) return replace(accountEl);
  const out = h("button", { type: "button", class: "link-button" }, "Log out");
  out.addEventListener("click", () => void logout());
  replace(accountEl, h("span", { class: "muted", title: "Signed in as" }, state.account.email), out);
}

/** @type {Record<string, View>} */
const signedInRoutes = {
  apps: (root, ctx, name, tab) => (name ? appView(root, ctx, name, tab ?? "overview") : appsView(root, ctx)),
  teams: (root, ctx, name) => (name ? teamView(root, ctx, name) : teamsView(root, ctx)),
};

async function render() {
  state.controller.abort();
  const controller = (state.controller = new AbortController());
  if (!state.known) {
    try {
      state.account = await call("GET", "/account", { quiet401: true });
    } catch {
      state.account = null;
    }
    state.known = true;
  }
  const [section = "", ...params] = route();
  renderHeader();
  const root = h("div", { class: "view" });
  replace(main, root);

  if (!state.account) {
    document.title = section === "signup" ? "Sign up · Berth" : "Log in · Berth";
    return (section === "signup" ? signupView : loginView)(root, { signedIn });
  }
  const view = signedInRoutes[section];
  if (!view) {
    if (section === "" || section === "login" || section === "signup") return go(["apps"]);
    document.title = "Not found · Berth";
    return replace(root, h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/apps" }, "Back to your apps")));
  }
  /** @type {Ctx} */
  const ctx = { account: state.account, signal: controller.signal, go, signedIn };
  try {
    await view(root, ctx, ...params);
  } catch (err) {
    if (controller.signal.aborted) return;
    root.append(h("div", { class: "notice error", role: "alert" }, err instanceof Error ? err.message : String(err)));
  }
}

whenUnauthorized(() => {
  // The session expired or was revoked: back to the login, staying on this route.
  if (!state.account) return;
  state.account = null;
  void render();
});
window.addEventListener("hashchange", () => void render());
void render();
