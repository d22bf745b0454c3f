#!/usr/bin/env node
// berth-static-server: serves the app directory (or static.json "root") on $PORT.
// static.json (all optional): { "root": "public", "clean_urls": true,
//   "error_page": "404.html", "headers": { "/assets/**": { "Cache-Control": "max-age=3600" } } }
import { createServer } from "node:http";
import { createReadStream, readFileSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";

const cwd = process.cwd();
let config = {};
try {
  config = JSON.parse(readFileSync(path.join(cwd, "static.json"), "utf8"));
} catch (e) {
  if (e.code !== "ENOENT") {
    console.error(`static.json: ${e.message}`);
    process.exit(1);
  }
}
const root = path.resolve(cwd, typeof config.root === "string" ? config.root : ".");
const types = {
  ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".json": "application/json",
  ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
  ".webp": "image/webp", ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8", ".xml": "application/xml",
  ".woff": "font/woff", ".woff2": "font/woff2", ".wasm": "application/wasm", ".pdf": "application/pdf", ".map": "application/json",
};
// Never served: build and config files of the app itself.
const hidden = new Set(["static.json", "Procfile", "package.json", "package-lock.json"]);

function glob(pattern) {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*/g, "\0").replace(/\*/g, "[^/]*").replace(/\0/g, ".*");
  return new RegExp(`^${re}$`);
}
const headerRules = Object.entries(config.headers ?? {}).map(([p, h]) => [glob(p), h]);

async function resolveFile(urlPath) {
  let rel = decodeURIComponent(urlPath.split("?")[0]);
  if (rel.includes("\0")) return null;
  const abs = path.resolve(root, "." + path.posix.normalize("/" + rel));
  if (abs !== root && !abs.startsWith(root + path.sep)) return null;
  if (path.relative(root, abs).split(path.sep).some((p) => p.startsWith(".") || hidden.has(p))) return null;
  const candidates = [abs, path.join(abs, "index.html")];
  if (config.clean_urls) candidates.push(abs + ".html");
  for (const c of candidates) {
    const st = await fs.stat(c).catch(() => null);
    if (!st?.isFile()) continue;
    // symlinks may not lead out of the root
    const real = await fs.realpath(c);
    const realRoot = await fs.realpath(root);
    if (real === realRoot || real.startsWith(realRoot + path.sep)) return { file: c, size: st.size, mtime: st.mtime };
  }
  return null;
}

const server = createServer(async (req, res) => {
  try {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    let found = await resolveFile(req.url ?? "/");
    let status = 200;
    if (!found) {
      status = 404;
      found = typeof config.error_page === "string" ? await resolveFile("/" + config.error_page) : null;
      if (!found) {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("Not Found\n");
        return;
      }
    }
    const headers = { "content-type": types[path.extname(found.file).toLowerCase()] ?? "application/octet-stream", "content-length": found.size, "last-modified": found.mtime.toUTCString() };
    const urlPath = (req.url ?? "/").split("?")[0];
    for (const [re, h] of headerRules) if (re.test(urlPath)) Object.assign(headers, h);
    res.writeHead(status, headers);
    if (req.method === "HEAD") res.end();
    else createReadStream(found.file).pipe(res);
  } catch {
    if (!res.headersSent) res.writeHead(400).end();
    else res.destroy();
  }
});

const port = Number(process.env.PORT ?? 5000);
server.listen(port, process.env.HOST ?? "0.0.0.0", () => console.log(`berth-static-server: serving ${root} on port ${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
