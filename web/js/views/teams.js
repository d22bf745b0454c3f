// Teams: the list, creating one, and a team's members and apps. Only admins get
// the controls that change membership; the API enforces the same rule.

import { call, enc } from "../api.js";
import { actionButton, externalLink, field, h, hashOf, link, notice, onSubmit, replace, select, table, time } from "../dom.js";

/** @type {[string, string][]} */
const ROLES = [
  ["member", "Member"],
  ["admin", "Admin"],
  ["viewer", "Viewer"],
];

/**
 * @param {HTMLElement} root
 * @param {import("../main.js").Ctx} ctx
 */
export async function teamsView(root, ctx) {
  document.title = "Teams · Berth";
  const note = notice();
  const name = field("Team name", { autocomplete: "off", spellcheck: "false", required: true, placeholder: "acme" });
  const form = h("form", { class: "inline-form", "aria-label": "Create a team" }, name.el, h("button", { type: "submit", class: "primary" }, "Create team"));
  const list = h("div", {}, h("p", { class: "muted" }, "Loading teams…"));
  onSubmit(form, note, async () => {
    const team = await call("POST", "/teams", { body: { name: name.input.value.trim() } });
    ctx.go(["teams", team.name]);
  });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Teams")),
    h("section", { class: "card", "aria-labelledby": "create-team" }, h("h2", { id: "create-team" }, "Create a team"), note.el, form, h("p", { class: "hint" }, "You become its admin. Team apps are shared with every member.")),
    h("section", { class: "card", "aria-labelledby": "your-teams" }, h("h2", { id: "your-teams" }, "Your teams"), list),
  );
  const teams = await call("GET", "/teams");
  replace(list, table("Your teams", ["Name", "Your role", "Created"], teams.map((/** @type {any} */ t) => [link(["teams", t.name], t.name), t.role, time(t.created_at)]), "You are not in any team yet."));
}

/**
 * @param {HTMLElement} root
 * @param {import("../main.js").Ctx} ctx
 * @param {string} name
 */
export async function teamView(root, ctx, name) {
  document.title = `${name} · Teams · Berth`;
  const path = `/teams/${enc(name)}`;
  const team = await call("GET", path);
  const admin = team.role === "admin";
  const note = notice();
  const members = h("div", {});
  const apps = h("div", {});

  const loadMembers = async () => {
    const rows = await call("GET", `${path}/members`);
    replace(
      members,
      table(
        "Members",
        admin ? ["Email", "Role", ""] : ["Email", "Role"],
        rows.map((/** @type {any} */ m) => {
          if (!admin) return [m.email, m.role];
          const role = h("select", { "aria-label": `Role of ${m.email}` }, ROLES.map(([v, t]) => h("option", { value: v, selected: v === m.role }, t)));
          role.addEventListener("change", async () => {
            note.clear();
            try {
              await call("PUT", `${path}/members`, { body: { email: m.email, role: role.value } });
              note.ok(`${m.email} is now ${role.value}.`);
            } catch (err) {
              role.value = m.role;
              note.error(err);
            }
          });
          const remove = actionButton("Remove", note, async () => {
            await call("DELETE", `${path}/members/${enc(m.email)}`);
            if (m.email === ctx.account.email) return ctx.go(["teams"]);
            await loadMembers();
            note.ok(`Removed ${m.email}.`);
          }, { "aria-label": `Remove ${m.email}`, class: "danger-quiet" });
          return [m.email, role, remove];
        }),
      ),
    );
  };

  const email = field("Member email", { type: "email", autocomplete: "off", required: true });
  const role = select("Role", ROLES, "member");
  const form = h("form", { class: "inline-form", "aria-label": "Add a member" }, email.el, role.el, h("button", { type: "submit", class: "primary" }, "Add member"));
  onSubmit(form, note, async () => {
    const m = await call("PUT", `${path}/members`, { body: { email: email.input.value.trim(), role: role.input.value } });
    email.input.value = "";
    await loadMembers();
    note.ok(`Added ${m.email} as ${m.role}.`);
  });

  root.append(
    h("div", { class: "page-head" }, h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/teams" }, "Teams"), " / "), h("h1", {}, team.name), h("p", { class: "muted" }, `Your role: ${team.role}`)),
    h("section", { class: "card", "aria-labelledby": "members" }, h("h2", { id: "members" }, "Members"), note.el, members, admin ? [h("h3", {}, "Add a member"), form, h("p", { class: "hint" }, "They need a Berth account already.")] : null),
    h("section", { class: "card", "aria-labelledby": "team-apps" }, h("h2", { id: "team-apps" }, "Apps"), apps),
  );
  const [teamApps] = await Promise.all([call("GET", `${path}/apps`), loadMembers()]);
  replace(apps, table("Team apps", ["Name", "Web URL"], teamApps.map((/** @type {any} */ a) => [h("a", { href: hashOf(["apps", a.name]) }, a.name), externalLink(a.web_url)]), "No apps in this team yet: create one from the apps page."));
}
