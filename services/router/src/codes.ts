/**
 * Router failures, mapped to HTTP in this one place. Codes follow Heroku's router
 * error codes (devcenter "Heroku Error Codes") so logs read the same; the status of a
 * few differs on purpose (H12 is a 504 gateway timeout, H17 a 502 bad gateway).
 */
export type RouterCode =
  | "H10" | "H11" | "H12" | "H13" | "H14" | "H15" | "H17" | "H18" | "H19" | "H20" | "H25" | "H27" | "H80" | "H99"
  | "NO_APP" | "BAD_REQUEST";

export interface CodeInfo {
  status: number;
  desc: string;
  /** Heroku logs H27 and H80 at info: the client or the owner chose them. */
  level: "info" | "error";
  /** Error id in the JSON body, from the platform's error family. */
  id: string;
  /** Sentence for the error page. */
  message: string;
}

export const CODES: Record<RouterCode, CodeInfo> = {
  H10: { status: 503, desc: "App crashed", level: "error", id: "unavailable", message: "The application is not accepting connections." },
  H11: { status: 503, desc: "Backlog too deep", level: "error", id: "unavailable", message: "Too many requests are waiting for this application to start." },
  H12: { status: 504, desc: "Request timeout", level: "error", id: "timeout", message: "The application did not answer in time." },
  H13: { status: 503, desc: "Connection closed without response", level: "error", id: "unavailable", message: "The application closed the connection without answering." },
  H14: { status: 503, desc: "No web dynos running", level: "error", id: "unavailable", message: "The application has no web processes running." },
  H15: { status: 503, desc: "Idle connection", level: "error", id: "unavailable", message: "The connection was idle for too long." },
  H17: { status: 502, desc: "Poorly formatted HTTP response", level: "error", id: "bad_gateway", message: "The application sent a malformed response." },
  H18: { status: 503, desc: "Server Request Interrupted", level: "error", id: "unavailable", message: "The application closed the connection while answering." },
  H19: { status: 503, desc: "Backend connection timeout", level: "error", id: "unavailable", message: "The application did not accept the connection in time." },
  H20: { status: 503, desc: "App boot timeout", level: "error", id: "unavailable", message: "The application did not start in time." },
  H25: { status: 413, desc: "HTTP Restriction", level: "error", id: "payload_too_large", message: "The request body is too large." },
  H27: { status: 499, desc: "Client Request Interrupted", level: "info", id: "client_closed", message: "The client closed the request." },
  H80: { status: 503, desc: "Maintenance mode", level: "info", id: "maintenance", message: "This application is undergoing maintenance. Please check back soon." },
  H99: { status: 503, desc: "Platform error", level: "error", id: "internal_error", message: "The platform failed to route this request." },
  NO_APP: { status: 404, desc: "No such app", level: "info", id: "not_found", message: "There is no app configured at this hostname." },
  BAD_REQUEST: { status: 400, desc: "Bad request", level: "info", id: "bad_request", message: "The request could not be understood." },
};

const TITLES: Partial<Record<RouterCode, string>> = {
  NO_APP: "No such app",
  H80: "Offline for Maintenance",
  H12: "Request timeout",
  H25: "Request too large",
};

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Whether the client prefers JSON to HTML. */
export function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  const a = accept.toLowerCase();
  const json = Math.min(...[a.indexOf("application/json"), a.indexOf("+json")].filter((i) => i >= 0));
  if (!Number.isFinite(json)) return false;
  const html = a.indexOf("text/html");
  return html < 0 || json < html;
}

export interface ErrorPage {
  status: number;
  contentType: string;
  body: string;
}

/** A small page (or JSON body) for a router failure; never includes internal details. */
export function errorPage(code: RouterCode, requestId: string, json: boolean): ErrorPage {
  const info = CODES[code];
  const status = code === "H27" ? 503 : info.status;
  if (json) {
    const body: Record<string, string> = { id: info.id, message: info.message, request_id: requestId };
    if (code.startsWith("H")) body.code = code;
    return { status, contentType: "application/json; charset=utf-8", body: JSON.stringify(body) + "\n" };
  }
  const title = TITLES[code] ?? "Application error";
  const detail = code.startsWith("H") ? ` (${code})` : "";
  const body =
    `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
    `<style>body{font-family:system-ui,sans-serif;margin:15vh auto;max-width:36em;color:#333}` +
    `small{color:#888}</style></head><body><h1>${escapeHtml(title)}</h1>` +
    `<p>${escapeHtml(info.message)}</p><p><small>request id ${escapeHtml(requestId)}${detail}</small></p></body></html>\n`;
  return { status, contentType: "text/html; charset=utf-8", body };
}
