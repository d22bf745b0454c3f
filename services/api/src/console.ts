/**
 * Serves the web console (web/: static browser ES modules, no build step) under
 * /console/. The console is a client of the public Platform API only; this file
 * does nothing but hand out its files, safely.
 */
import { readFile, realpath, stat } from "node:fs/promises";
import { extname, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Hono } from "hono";

/** web/ of this checkout: services/api/src/ → ../../../web. */
export const CONSOLE_DIR = fileURLToPath(new URL("../../../web/", import.meta.url));

/**
 * Only these file types are served; anything else under web/ (notes, sources of
 * a future build step) answers 404 rather than application/octet-stream.
 */
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
};

/**
 * The console needs nothing from other origins: no inline script or style, no
 * CDN, and API calls go to this same origin. `connect-src 'self'` also keeps an
 * injected script from sending the session's data elsewhere.
 */
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy": CSP,
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "same-origin",
  "Cache-Control": "no-cache",
};

/**
 * Mounts GET /console/* (the files of webDir) and GET / (a redirect to the
 * console for browsers; API clients keep the JSON 404). Mounted as middleware,
 * like hono/serve-static: these are not Platform API endpoints, so they stay
 * out of the route table's OpenAPI comparison (which skips ALL-method entries);
 * other methods fall through to the API's 404.
 */
export function mountConsole(app: Hono<any>, webDir: string): void {
  const readOnly = (method: string) => method === "GET" || method === "HEAD";
  app.use("/", async (c, next) => {
    if (readOnly(c.req.method) && prefersHtml(c.req.header("Accept"))) return c.redirect("/console/", 302);
    return next();
  });
  app.use("/console/*", async (c, next) => {
    if (!readOnly(c.req.method)) return next();
    const pathname = new URL(c.req.url).pathname;
    if (pathname === "/console") return c.redirect("/console/", 301);
    const file = await consoleFile(webDir, pathname);
    if (!file) return notFound();
    const etag = `W/"${file.size.toString(16)}-${Math.floor(file.mtimeMs).toString(16)}"`;
    if (c.req.header("If-None-Match") === etag) return new Response(null, { status: 304, headers: { ...SECURITY_HEADERS, ETag: etag } });
    return new Response(await readFile(file.path), {
      headers: { ...SECURITY_HEADERS, "Content-Type": file.type, ETag: etag },
    });
  });
}

/**
 * Maps a request path to a regular file under webDir, or null. Invariant: the
 * answer is always inside webDir. Segments are decoded one by one and refused if
 * they could climb (`..`), name a dotfile, or smuggle a separator (`%2f`, `\`,
 * NUL); then the resolved path, symlinks followed, must still be under it.
 */
export async function consoleFile(webDir: string, pathname: string): Promise<{ path: string; type: string; size: number; mtimeMs: number } | null> {
  if (!pathname.startsWith("/console/")) return null;
  const root = resolve(webDir);
  const raw = pathname.slice("/console/".length) || "index.html";
  const parts: string[] = [];
  for (const seg of raw.split("/")) {
    let s: string;
    try {
      s = decodeURIComponent(seg);
    } catch {
      return null;
    }
    if (s === "" || s.startsWith(".") || /[\\/\0:]/.test(s)) return null;
    parts.push(s);
  }
  const type = TYPES[extname(parts[parts.length - 1]!).toLowerCase()];
  if (!type) return null;
  const candidate = resolve(root, ...parts);
  if (!candidate.startsWith(root + sep)) return null;
  try {
    const [real, realRoot] = await Promise.all([realpath(candidate), realpath(root)]);
    if (!real.startsWith(realRoot + sep)) return null;
    const st = await stat(real);
    if (!st.isFile()) return null;
    return { path: real, type, size: st.size, mtimeMs: st.mtimeMs };
  } catch {
    return null;
  }
}

/** True when the client ranks HTML above everything else it names (wildcards do not count as HTML). */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  let best: { type: string; q: number } | undefined;
  for (const part of accept.split(",")) {
    const [type = "", ...params] = part.split(";").map((s) => s.trim().toLowerCase());
    if (!type) continue;
    const qp = params.find((p) => p.startsWith("q="));
    const q = qp ? Number(qp.slice(2)) : 1;
    if (!(q > 0)) continue;
    if (!best || q > best.q) best = { type, q };
  }
  return best?.type === "text/html" || best?.type === "application/xhtml+xml";
}

function notFound(): Response {
  return new Response("Not found\n", { status: 404, headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8" } });
}
