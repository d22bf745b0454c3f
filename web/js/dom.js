// DOM helpers. Every string that reaches the page goes through textContent or a
// plain attribute, never innerHTML: app names, config values, log lines and
// error messages are all controlled by someone other than the reader.

/**
 * @typedef {string | number | Node | null | undefined | false} Child
 * @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attrs
 */

/**
 * Creates an element. `on*` attributes given functions become listeners; other
 * attributes are set as attributes (false/null/undefined leave them out).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {(Child | Child[])[]} children
 */
export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "object" ? child : String(child));
  }
}

/**
 * Replaces an element's children.
 * @param {Element} el
 * @param {...(Child | Child[])} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
/**
 * A labelled form field: <label for> + <input id>, so screen readers and tests
 * find inputs by their label.
 * @param {string} label
 * @param {Attrs} [attrs] attributes of the input
 */
export function field(label, attrs = {}) {
  const id = `f${++ids}`;
  const input = h("input", { id, name: id, ...attrs });
  return { input, el: h("div", { class: "field" }, h("label", { for: id }, label), input) };
}

/**
 * A labelled <textarea> (config values may span lines).
 * @param {string} label
 * @param {Attrs} [attrs]
 */
export function textarea(label, attrs = {}) {
  const id = `f${++ids}`;
  const input = h("textarea", { id, name: id, ...attrs });
  return { input, el: h("div", { class: "field grow" }, h("label", { for: id }, label), input) };
}

/**
 * A labelled <select>.
 * @param {string} label
 * @param {[value: string, text: string][]} options
 * @param {string} [selected]
 */
export function select(label, options, selected) {
  const id = `f${++ids}`;
  const input = h("select", { id, name: id }, options.map(([value, text]) => h("option", { value, selected: value === selected }, text)));
  return { input, el: h("div", { class: "field" }, h("label", { for: id }, label), input) };
}

/**
 * A hash link. Path segments are URI-encoded, so any name makes a safe href.
 * @param {string[]} segments
 * @param {...Child} children
 */
export function link(segments, ...children) {
  return h("a", { href: hashOf(segments) }, ...children);
}

/** @param {string[]} segments */
export function hashOf(segments) {
  return "#/" + segments.map(encodeURIComponent).join("/");
}

/**
 * An external link, only for http(s) URLs (a `javascript:` URL from the API
 * must not become clickable).
 * @param {string | null | undefined} url
 */
export function externalLink(url) {
  if (!url) return h("span", { class: "muted" }, "—");
  let ok = false;
  try {
    ok = ["http:", "https:"].includes(new URL(url).protocol);
  } catch {
    ok = false;
  }
  return ok ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url) : h("span", {}, url);
}

/**
 * A table with a header row; `rows` are arrays of cells.
 * @param {string} caption visually hidden, names the table for assistive tech
 * @param {string[]} headers
 * @param {(Child | Child[])[][]} rows
 * @param {string} [empty] text shown instead when there are no rows
 */
export function table(caption, headers, rows, empty = "Nothing here yet.") {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))),
  );
}

/**
 * A region that shows one message at a time: errors as alerts, the rest as status.
 */
export function notice() {
  const el = h("div", { class: "notice", role: "status", "aria-live": "polite" });
  return {
    el,
    /** @param {unknown} err */
    error(err) {
      el.className = "notice error";
      el.setAttribute("role", "alert");
      el.textContent = err instanceof Error ? err.message : String(err);
    },
    /** @param {string} text */
    ok(text) {
      el.className = "notice ok";
      el.setAttribute("role", "status");
      el.textContent = text;
    },
    clear() {
      el.className = "notice";
      el.textContent = "";
    },
  };
}

/**
 * `2026-11-23T23:12:17Z` → local date and time; the ISO value stays in datetime.
 * @param {string | null | undefined} iso
 */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
}

/** @param {string} status */
export function badge(status) {
  return h("span", { class: `badge badge-${status.replace(/[^a-z-]/g, "")}` }, status);
}

/**
 * Runs a form submit handler with the button disabled, reporting errors.
 * @param {HTMLFormElement} form
 * @param {{ error(err: unknown): void, clear(): void }} note
 * @param {() => Promise<void>} action
 */
export function onSubmit(form, note, action) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((b) => (b.disabled = true));
    note.clear();
    try {
      await action();
    } catch (err) {
      note.error(err);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}

/**
 * A button whose click runs an async action, disabled meanwhile.
 * @param {string} text
 * @param {{ error(err: unknown): void, clear(): void }} note
 * @param {() => Promise<void>} action
 * @param {Attrs} [attrs]
 */
export function actionButton(text, note, action, attrs = {}) {
  const b = h("button", { type: "button", ...attrs }, text);
  b.addEventListener("click", async () => {
    b.disabled = true;
    note.clear();
    try {
      await action();
    } catch (err) {
      note.error(err);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}
