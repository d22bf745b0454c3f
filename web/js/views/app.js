// One app: a header and a tab per resource. The tab is part of the route
// (#/apps/NAME/config), so reloads and links keep it.

import { call, enc } from "../api.js";
import { h, hashOf } from "../dom.js";
import { buildsTab, configTab, domainsTab, formationTab, logsTab, overviewTab, releasesTab } from "./app-tabs.js";

/**
 * @typedef {(panel: HTMLElement, app: any, ctx: import("../main.js").Ctx) => Promise<void> | void} Tab
 * @type {[id: string, title: string, tab: Tab][]}
 */
const TABS = [
  ["overview", "Overview", overviewTab],
  ["releases", "Releases", releasesTab],
  ["config", "Config vars", configTab],
  ["formation", "Formation", formationTab],
  ["domains", "Domains", domainsTab],
  ["builds", "Builds", buildsTab],
  ["logs", "Logs", logsTab],
];

/**
 * @param {HTMLElement} root
 * @param {import("../main.js").Ctx} ctx
 * @param {string} name
 * @param {string} tabId
 */
export async function appView(root, ctx, name, tabId) {
  const tab = TABS.find(([id]) => id === tabId);
  if (!tab) throw new Error(`There is no ${tabId} tab.`);
  document.title = `${name} · ${tab[1]} · Berth`;
  const app = await call("GET", `/apps/${enc(name)}`);
  const panel = h("section", { class: "card panel", id: "panel", "aria-label": tab[1] });
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/apps" }, "Apps"), " / "),
      h("h1", {}, app.name, app.maintenance ? h("span", { class: "badge badge-maintenance" }, "maintenance") : null),
      app.team ? h("p", { class: "muted" }, "Team ", h("a", { href: hashOf(["teams", app.team.name]) }, app.team.name)) : null,
    ),
    h(
      "nav",
      { class: "tabs", "aria-label": "App sections" },
      TABS.map(([id, title]) => h("a", { href: hashOf(["apps", app.name, id]), "aria-current": id === tabId ? "page" : null }, title)),
    ),
    panel,
  );
  await tab[2](panel, app, ctx);
}
