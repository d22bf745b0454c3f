// The console's only way to the platform: the public Platform API on this same
// origin, authenticated by the HttpOnly `berth_session` cookie that POST /login
// sets. The browser adds the Origin header the API checks on writes.

const ACCEPT = "application/vnd.heroku+json; version=3";

/** An API error body `{id, message}`, with the HTTP status. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} id
   * @param {string} message
   */
  constructor(status, id, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.id = id;
  }
}

/** @type {() => void} */
let onUnauthorized = () => {};

/**
 * Called when a request answers 401 (the session ended): the shell shows the login.
 * @param {() => void} fn
 */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/**
 * Calls the Platform API. Resolves with the parsed JSON body; rejects with an
 * ApiError carrying the API's own message.
 * @param {string} method
 * @param {string} path e.g. `/apps/${enc(name)}/config-vars`
 * @param {{ body?: unknown, range?: string, quiet401?: boolean }} [opts]
 * @returns {Promise<any>}
 */
export async function call(method, path, opts = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: ACCEPT };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.range) headers.Range = opts.range;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });
  } catch {
    throw new ApiError(0, "network", "Could not reach the platform. Check your connection and try again.");
  }
  const text = await res.text();
  /** @type {any} */
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    if (res.status === 401 && !opts.quiet401) onUnauthorized();
    const message = data && typeof data.message === "string" ? data.message : `The platform answered ${res.status} ${res.statusText}.`;
    throw new ApiError(res.status, data && typeof data.id === "string" ? data.id : "error", message);
  }
  return data;
}

/** URI-encodes one path segment. */
export const enc = encodeURIComponent;

/**
 * The console only reads streams from its own origin (the CSP says so too): a
 * URL the API hands out (output_stream_url, logplex_url) is reduced to its path.
 * @param {string} url
 */
export function sameOrigin(url) {
  const u = new URL(url, location.href);
  return u.pathname + u.search;
}

/**
 * Reads a text stream, handing each decoded chunk to onText, until it ends or
 * signal aborts. Resolves when the stream is over.
 * @param {string} url
 * @param {(text: string) => void} onText
 * @param {AbortSignal} signal
 */
export async function readStream(url, onText, signal) {
  const res = await fetch(sameOrigin(url), { credentials: "same-origin", signal, headers: { Accept: "text/plain" } });
  if (!res.ok || !res.body) {
    let message = `The platform answered ${res.status} ${res.statusText}.`;
    try {
      const data = JSON.parse(await res.text());
      if (typeof data.message === "string") message = data.message;
    } catch {
      /* not an API error body */
    }
    throw new ApiError(res.status, "stream", message);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      onText(value);
    }
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
}
