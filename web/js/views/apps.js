// The apps list, and creating an app (personal, or in a team you belong to).

import { call } from "../api.js";
import { externalLink, field, h, link, notice, onSubmit, replace, select, table, time } from "../dom.js";

/**
 * @param {HTMLElement} root
 * @param {import("../main.js").Ctx} ctx
 */
export async function appsView(root, ctx) {
  document.title = "Apps · Berth";
  const note = notice();
  const name = field("App name", { autocomplete: "off", spellcheck: "false", placeholder: "my-app", "aria-describedby": "app-name-hint" });
  const owner = select("Owner", [["", "Personal"]]);
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Create an app" },
    name.el,
    owner.el,
    h("button", { type: "submit", class: "primary" }, "Create app"),
  );
  const list = h("div", {}, h("p", { class: "muted" }, "Loading apps…"));
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Apps")),
    h(
      "section",
      { class: "card", "aria-labelledby": "create-app" },
      h("h2", { id: "create-app" }, "Create an app"),
      note.el,
      form,
      h("p", { id: "app-name-hint", class: "hint" }, "Lowercase letters, digits and dashes. Leave empty for a generated name."),
    ),
    h("section", { class: "card", "aria-labelledby": "your-apps" }, h("h2", { id: "your-apps" }, "Your apps"), list),
  );

  onSubmit(form, note, async () => {
    const wanted = name.input.value.trim();
    const team = owner.input.value;
    const body = wanted ? { name: wanted } : {};
    const app = team ? await call("POST", "/teams/apps", { body: { ...body, team } }) : await call("POST", "/apps", { body });
    ctx.go(["apps", app.name]);
  });

  const [apps, teams] = await Promise.all([call("GET", "/apps"), call("GET", "/teams")]);
  for (const t of teams) if (t.role !== "viewer") owner.input.append(h("option", { value: t.name }, `Team ${t.name}`));
  replace(
    list,
    table(
      "Your apps",
      ["Name", "Owner", "Web URL", "Updated"],
      apps.map((/** @type {any} */ a) => [link(["apps", a.name], a.name), a.team ? `Team ${a.team.name}` : a.owner.email, externalLink(a.web_url), time(a.updated_at)]),
      "No apps yet: create your first one above.",
    ),
  );
}
