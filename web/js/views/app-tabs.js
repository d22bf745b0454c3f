// The tabs of an app's page. Each gets the panel to render into, the app as the
// API answered it, and the view's context (whose signal ends its streams).

import { call, enc, readStream } from "../api.js";
import { actionButton, badge, externalLink, field, h, notice, onSubmit, replace, table, textarea, time } from "../dom.js";

/**
 * @typedef {import("../main.js").Ctx} Ctx
 * @typedef {{ id: string, name: string, web_url: string, git_url: string, maintenance: boolean, team: { name: string } | null, owner: { email: string }, region: { name: string }, stack: { name: string }, created_at: string, released_at: string | null }} App
 */

/** @param {string} id */
const short = (id) => id.slice(0, 8);

/** @param {App} app */
const base = (app) => `/apps/${enc(app.name)}`;

/**
 * Appends streamed text to a <pre>, keeping it scrolled to the end while the
 * reader is at the end, and bounded so a long tail does not eat the tab's memory.
 * @param {HTMLElement} pre
 * @param {string} text
 */
function appendOutput(pre, text) {
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.append(text);
  while (pre.childNodes.length > 2000) pre.firstChild?.remove();
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

/**
 * @param {HTMLElement} panel
 * @param {App} app
 * @param {Ctx} ctx
 */
export function overviewTab(panel, app, ctx) {
  const note = notice();
  const maintenance = h("input", { type: "checkbox", id: "maintenance", checked: app.maintenance, "aria-describedby": "maintenance-hint" });
  maintenance.addEventListener("change", async () => {
    const want = maintenance.checked;
    maintenance.disabled = true;
    note.clear();
    try {
      const updated = await call("PATCH", base(app), { body: { maintenance: want } });
      maintenance.checked = updated.maintenance;
      note.ok(updated.maintenance ? "Maintenance mode is on." : "Maintenance mode is off.");
    } catch (err) {
      maintenance.checked = !want;
      note.error(err);
    } finally {
      maintenance.disabled = false;
    }
  });

  const confirm = field("Type the app name to confirm", { autocomplete: "off", spellcheck: "false" });
  const del = actionButton("Delete app", note, async () => {
    await call("DELETE", base(app));
    ctx.go(["apps"]);
  }, { class: "danger", disabled: true });
  confirm.input.addEventListener("input", () => (del.disabled = confirm.input.value !== app.name));

  panel.append(
    h("h2", {}, "Overview"),
    note.el,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Web URL"), h("dd", {}, externalLink(app.web_url)),
      h("dt", {}, "Git URL"), h("dd", {}, h("code", {}, app.git_url)),
      h("dt", {}, "Owner"), h("dd", {}, app.team ? `Team ${app.team.name}` : app.owner.email),
      h("dt", {}, "Region"), h("dd", {}, app.region.name),
      h("dt", {}, "Stack"), h("dd", {}, app.stack.name),
      h("dt", {}, "Created"), h("dd", {}, time(app.created_at)),
      h("dt", {}, "Last release"), h("dd", {}, time(app.released_at)),
    ),
    h("h3", {}, "Deploy with git"),
    h("p", { class: "hint" }, "Add the platform as a git remote, then push to deploy:"),
    h("pre", { class: "snippet", "aria-label": "Git commands" }, `git remote add platform ${app.git_url}\ngit push platform main`),
    h("h3", {}, "Maintenance"),
    h("div", { class: "toggle" }, maintenance, h("label", { for: "maintenance" }, "Maintenance mode")),
    h("p", { id: "maintenance-hint", class: "hint" }, "While on, the router answers every request with a maintenance page (503) and the app keeps its dynos."),
    h(
      "details",
      { class: "danger-zone" },
      h("summary", {}, "Delete this app"),
      h("p", { class: "hint" }, "Deleting stops its dynos and removes its releases, config vars and domains. This cannot be undone."),
      h("div", { class: "inline-form" }, confirm.el, del),
    ),
  );
}

/**
 * @param {HTMLElement} panel
 * @param {App} app
 */
export async function releasesTab(panel, app) {
  const note = notice();
  const list = h("div", {});
  panel.append(
    h("h2", {}, "Releases"),
    h("p", { class: "hint" }, "The last 20, newest first. A rollback makes a new release from an earlier build and its config: nothing is rebuilt."),
    note.el,
    list,
  );
  const load = async () => {
    const releases = await call("GET", `${base(app)}/releases`, { range: "version ..; order=desc, max=20" });
    replace(
      list,
      table(
        "Releases",
        ["Version", "Description", "Status", "By", "Created", ""],
        releases.map((/** @type {any} */ r) => [
          h("strong", {}, `v${r.version}`),
          [r.description, r.failure_reason ? h("div", { class: "failure" }, r.failure_reason) : null],
          [badge(r.status), r.current ? badge("current") : null],
          r.user?.email ?? "—",
          time(r.created_at),
          r.slug && !r.current && r.status === "succeeded"
            ? actionButton(`Roll back to v${r.version}`, note, async () => {
                const made = await call("POST", `${base(app)}/releases`, { body: { release: r.id } });
                await load();
                note.ok(`Rolled back to v${r.version}: v${made.version} is being deployed.`);
              })
            : null,
        ]),
        "No releases yet.",
      ),
    );
  };
  await load();
}

/**
 * Config vars. Values stay masked until the reader asks to see them: they are
 * often secrets, and screens get shared.
 * @param {HTMLElement} panel
 * @param {App} app
 */
export async function configTab(panel, app) {
  const note = notice();
  /** @type {Record<string, string>} */
  let vars = {};
  let revealed = false;
  const list = h("div", {});
  const toggle = h("button", { type: "button", "aria-pressed": "false" }, "Reveal values");
  const key = field("Key", { autocomplete: "off", spellcheck: "false", required: true, placeholder: "DATABASE_URL" });
  const value = textarea("Value", { autocomplete: "off", spellcheck: "false", rows: 1 });
  const form = h("form", { class: "inline-form", "aria-label": "Set a config var" }, key.el, value.el, h("button", { type: "submit", class: "primary" }, "Set"));

  const draw = () => {
    const keys = Object.keys(vars).sort();
    replace(
      list,
      table(
        "Config vars",
        ["Key", "Value", ""],
        keys.map((k) => [
          h("code", {}, k),
          revealed ? h("code", { class: "value" }, vars[k]) : h("span", { class: "masked", title: "Hidden: reveal values to see it" }, "••••••••"),
          h(
            "div",
            { class: "row-actions" },
            h("button", { type: "button", "aria-label": `Edit ${k}`, onclick: () => edit(k) }, "Edit"),
            actionButton("Remove", note, async () => {
              vars = await call("PATCH", `${base(app)}/config-vars`, { body: { [k]: null } });
              draw();
              note.ok(`Removed ${k}.`);
            }, { "aria-label": `Remove ${k}`, class: "danger-quiet" }),
          ),
        ]),
        "No config vars yet.",
      ),
    );
  };
  /** @param {string} k */
  const edit = (k) => {
    key.input.value = k;
    value.input.value = vars[k] ?? "";
    value.input.focus();
  };
  toggle.addEventListener("click", () => {
    revealed = !revealed;
    toggle.textContent = revealed ? "Hide values" : "Reveal values";
    toggle.setAttribute("aria-pressed", String(revealed));
    draw();
  });
  onSubmit(form, note, async () => {
    const k = key.input.value.trim();
    vars = await call("PATCH", `${base(app)}/config-vars`, { body: { [k]: value.input.value } });
    key.input.value = "";
    value.input.value = "";
    draw();
    note.ok(`Set ${k}.`);
  });

  panel.append(h("div", { class: "section-head" }, h("h2", {}, "Config vars"), toggle), note.el, list, h("h3", {}, "Set a config var"), form, h("p", { class: "hint" }, "Setting a var that exists replaces its value. Changes restart the app's dynos once it has a build."));
  vars = await call("GET", `${base(app)}/config-vars`);
  draw();
}

/**
 * @param {HTMLElement} panel
 * @param {App} app
 */
export async function formationTab(panel, app) {
  const note = notice();
  const [formation, dynos] = await Promise.all([call("GET", `${base(app)}/formation`), call("GET", `${base(app)}/dynos`)]);
  const rows = formation.map((/** @type {any} */ f) => {
    const qty = h("input", { type: "number", min: 0, max: 100, step: 1, value: f.quantity, class: "qty", "aria-label": `Quantity of ${f.type} dynos` });
    const scale = actionButton("Scale", note, async () => {
      const quantity = Number(qty.value);
      if (!Number.isInteger(quantity) || quantity < 0) throw new Error("Quantity must be a whole number, 0 or more.");
      const updated = await call("PATCH", `${base(app)}/formation/${enc(f.type)}`, { body: { quantity } });
      qty.value = String(updated.quantity);
      note.ok(`Scaled ${updated.type} to ${updated.quantity}.`);
    }, { "aria-label": `Scale ${f.type}` });
    return [h("code", {}, f.type), h("code", {}, f.command), f.size, h("div", { class: "row-actions start" }, qty, scale)];
  });
  const restart = actionButton("Restart all dynos", note, async () => {
    await call("DELETE", `${base(app)}/dynos`);
    note.ok("Restarting all dynos.");
  });
  panel.append(
    h("h2", {}, "Formation"),
    note.el,
    table("Process types", ["Type", "Command", "Size", "Quantity"], rows, "No process types yet: they come from the Procfile of the first build."),
    h("div", { class: "section-head" }, h("h3", {}, "Dynos"), dynos.length ? restart : null),
    table(
      "Dynos",
      ["Name", "State", "Size", "Release", "Restarts", "Last exit", "Started"],
      dynos.map((/** @type {any} */ d) => [h("code", {}, d.name), badge(d.state), d.size, `v${d.release.version}`, String(d.restarts ?? 0), d.last_exit ?? "—", time(d.created_at)]),
      "No dynos running.",
    ),
  );
}

/**
 * @param {HTMLElement} panel
 * @param {App} app
 */
export async function domainsTab(panel, app) {
  const note = notice();
  const list = h("div", {});
  const hostname = field("Hostname", { autocomplete: "off", spellcheck: "false", required: true, placeholder: "www.example.com" });
  const form = h("form", { class: "inline-form", "aria-label": "Add a domain" }, hostname.el, h("button", { type: "submit", class: "primary" }, "Add domain"));
  const load = async () => {
    const domains = await call("GET", `${base(app)}/domains`);
    replace(
      list,
      table(
        "Domains",
        ["Hostname", "Kind", "DNS target", "Status", ""],
        domains.map((/** @type {any} */ d) => [
          h("code", {}, d.hostname),
          d.kind,
          d.cname ? h("code", {}, d.cname) : "—",
          badge(d.status),
          d.kind === "custom"
            ? actionButton("Remove", note, async () => {
                await call("DELETE", `${base(app)}/domains/${enc(d.hostname)}`);
                await load();
                note.ok(`Removed ${d.hostname}.`);
              }, { "aria-label": `Remove ${d.hostname}`, class: "danger-quiet" })
            : null,
        ]),
      ),
    );
  };
  onSubmit(form, note, async () => {
    const d = await call("POST", `${base(app)}/domains`, { body: { hostname: hostname.input.value.trim() } });
    hostname.input.value = "";
    await load();
    note.ok(`Added ${d.hostname}. Point a CNAME record at ${d.cname}.`);
  });
  panel.append(h("h2", {}, "Domains"), note.el, list, h("h3", {}, "Add a custom domain"), form);
  await load();
}

/**
 * @param {HTMLElement} panel
 * @param {App} app
 * @param {Ctx} ctx
 */
export async function buildsTab(panel, app, ctx) {
  const note = notice();
  const title = h("h3", { id: "build-output-title", hidden: true }, "Build output");
  const out = h("pre", { class: "output", "aria-labelledby": "build-output-title", tabindex: 0, hidden: true });
  /** @type {AbortController | null} */
  let following = null;

  /** @param {any} b */
  const show = async (b) => {
    following?.abort();
    const mine = (following = new AbortController());
    title.hidden = false;
    out.hidden = false;
    title.textContent = `Output of build ${short(b.id)}`;
    out.replaceChildren();
    await readStream(b.output_stream_url, (t) => appendOutput(out, t), AbortSignal.any([ctx.signal, mine.signal]));
    if (!mine.signal.aborted && !out.textContent) out.textContent = "(no output)";
  };

  const builds = await call("GET", `${base(app)}/builds`, { range: "created_at ..; order=desc, max=20" });
  panel.append(
    h("h2", {}, "Builds"),
    h("p", { class: "hint" }, "The last 20, newest first. Push with git or upload a source to build."),
    note.el,
    table(
      "Builds",
      ["Started", "Build", "Status", "Version", ""],
      builds.map((/** @type {any} */ b) => [
        time(b.created_at),
        h("code", {}, short(b.id)),
        [badge(b.status), b.failure ? h("div", { class: "failure" }, b.failure) : null],
        b.source_blob.version ?? "—",
        actionButton("Show output", note, () => show(b), { "aria-label": `Show output of build ${short(b.id)}` }),
      ]),
      "No builds yet.",
    ),
    title,
    out,
  );
}

/**
 * Live logs: a log session with tail, read as a stream until the reader pauses
 * or leaves the tab.
 * @param {HTMLElement} panel
 * @param {App} app
 * @param {Ctx} ctx
 */
export function logsTab(panel, app, ctx) {
  const note = notice();
  const out = h("pre", { class: "output logs", role: "log", "aria-label": "Log output", tabindex: 0 });
  const status = h("span", { class: "muted", "aria-live": "polite" }, "Connecting…");
  const button = h("button", { type: "button" }, "Pause");
  /** @type {AbortController | null} */
  let live = null;

  const start = async () => {
    const mine = (live = new AbortController());
    const signal = AbortSignal.any([ctx.signal, mine.signal]);
    button.textContent = "Pause";
    status.textContent = "Connecting…";
    note.clear();
    out.replaceChildren();
    try {
      const session = await call("POST", `${base(app)}/log-sessions`, { body: { lines: 100, tail: true } });
      if (signal.aborted) return;
      status.textContent = "Live";
      await readStream(session.logplex_url, (t) => appendOutput(out, t), signal);
      if (!signal.aborted) status.textContent = "The log stream ended.";
    } catch (err) {
      if (!signal.aborted) {
        status.textContent = "Disconnected.";
        note.error(err);
      }
    }
    if (!signal.aborted) {
      mine.abort();
      button.textContent = "Reconnect";
    }
  };
  button.addEventListener("click", () => {
    if (live && !live.signal.aborted) {
      live.abort();
      button.textContent = "Resume";
      status.textContent = "Paused.";
    } else {
      void start();
    }
  });
  panel.append(h("div", { class: "section-head" }, h("h2", {}, "Logs"), h("div", { class: "row-actions" }, status, button)), note.el, out);
  void start();
}
