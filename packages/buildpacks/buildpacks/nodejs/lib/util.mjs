// Helpers for the Node.js buildpack. Plain ESM JavaScript so it runs on any
// Node >= 18 the lifecycle provides; no dependencies.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export const header = (s) => console.log(`-----> ${s}`);
export const info = (s) => console.log(`       ${s}`);
export const warn = (s) => console.log(` !     ${s}`);

/** Reads the TOML this lifecycle writes: [[tables]], [a.b] tables, key = JSON-like scalar/array values. */
export function parseSimpleToml(text) {
  const root = {};
  let cur = root;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    let m;
    if ((m = /^\[\[([^\]]+)\]\]$/.exec(line))) {
      const keys = m[1].split(".").map((k) => k.trim());
      const parent = walk(root, keys.slice(0, -1));
      const last = keys[keys.length - 1];
      if (!Array.isArray(parent[last])) parent[last] = [];
      cur = {};
      parent[last].push(cur);
    } else if ((m = /^\[([^\]]+)\]$/.exec(line))) {
      cur = walk(root, m[1].split(".").map((k) => k.trim()));
    } else if ((m = /^("?[A-Za-z0-9_.-]+"?)\s*=\s*(.*)$/.exec(line))) {
      const key = m[1].replace(/^"|"$/g, "");
      let v = m[2].replace(/\s+#.*$/, "");
      try {
        cur[key] = JSON.parse(v);
      } catch {
        cur[key] = v.replace(/^'|'$/g, "");
      }
    }
  }
  return root;
}

function walk(root, keys) {
  let t = root;
  for (const k of keys) {
    let next = t[k];
    if (Array.isArray(next)) next = next[next.length - 1];
    if (next === undefined) next = t[k] = {};
    t = next;
  }
  return t;
}

/** Writes a <layer>.toml: [types] and a flat [metadata] of strings/numbers/booleans. */
export function layerToml(types, metadata = {}) {
  const lines = ["[types]"];
  for (const k of ["launch", "build", "cache"]) lines.push(`${k} = ${Boolean(types[k])}`);
  lines.push("", "[metadata]");
  for (const [k, v] of Object.entries(metadata)) lines.push(`${k} = ${JSON.stringify(v)}`);
  return lines.join("\n") + "\n";
}

export async function readLayerMetadata(layersDir, name) {
  try {
    return parseSimpleToml(await fs.readFile(path.join(layersDir, `${name}.toml`), "utf8")).metadata ?? {};
  } catch {
    return null;
  }
}

export async function exists(p) {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

export async function sha256Files(files) {
  const h = createHash("sha256");
  for (const f of files) {
    // The file's name, not its path: the app directory differs between builds
    // (and between sandboxed and plain builds), its lockfile does not.
    h.update(path.basename(f) + "\0");
    h.update(await fs.readFile(f).catch(() => Buffer.alloc(0)));
  }
  return h.digest("hex");
}

/** Platform env (config vars) as files in <platform>/env. */
export async function platformEnv(platformDir) {
  const out = {};
  const dir = path.join(platformDir, "env");
  let names = [];
  try {
    names = await fs.readdir(dir);
  } catch {
    return out;
  }
  for (const n of names) out[n] = await fs.readFile(path.join(dir, n), "utf8");
  return out;
}

/** Runs a command, streaming its output line by line to stdout; rejects on failure. */
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    const pipe = (s) => {
      let buf = "";
      s.on("data", (c) => {
        buf += c.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const l = buf.slice(0, i).replace(/\r$/, "");
          if (l.trim() !== "") info(l);
          buf = buf.slice(i + 1);
        }
      });
      s.on("end", () => buf.trim() && info(buf));
    };
    pipe(p.stdout);
    pipe(p.stderr);
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} exited with code ${code}`))));
  });
}

export async function fetchOk(url, init = {}, timeoutMs = 60_000) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res;
}

/** Downloads a registry `dist` (tarball + integrity) into `dir`; returns the file. */
export async function download(dist, dir) {
  const file = path.join(dir, path.basename(new URL(dist.tarball).pathname));
  const res = await fetchOk(dist.tarball, {}, 300_000);
  await pipeline(Readable.fromWeb(res.body), createWriteStream(file));
  if (dist.integrity) {
    const [algo, want] = dist.integrity.split(/-(.*)/s);
    const got = createHash(algo).update(await fs.readFile(file)).digest("base64");
    if (got !== want) throw new Error(`Integrity check failed for ${dist.tarball}`);
  }
  return file;
}

// ---------------------------------------------------------------- semver (node-semver's range grammar, releases only)

export function parseVersion(v) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(String(v).trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

function cmp(a, b) {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** A partial version "24", "24.1", "24.x", "*" → [parts, count of given parts]. */
function partial(s) {
  const parts = s.replace(/^[v=]+/, "").split(".");
  const nums = [];
  for (const p of parts.slice(0, 3)) {
    if (p === "" || p === "x" || p === "X" || p === "*") break;
    if (!/^\d+$/.test(p)) throw new Error(`invalid version ${JSON.stringify(s)}`);
    nums.push(Number(p));
  }
  return nums;
}

const pad = (n) => [n[0] ?? 0, n[1] ?? 0, n[2] ?? 0];
const bump = (n, i) => (i === 0 ? [n[0] + 1, 0, 0] : i === 1 ? [n[0], n[1] + 1, 0] : [n[0], n[1], n[2] + 1]);

/** Comparator set → list of [op, version] tests. */
function comparators(set) {
  const out = [];
  const hy = /^\s*(\S+)\s+-\s+(\S+)\s*$/.exec(set);
  if (hy) {
    const lo = partial(hy[1]);
    const hi = partial(hy[2]);
    out.push([">=", pad(lo)]);
    if (hi.length === 0) return out;
    out.push(hi.length === 3 ? ["<=", hi] : ["<", bump(pad(hi), hi.length - 1)]);
    return out;
  }
  const tokens = set.replace(/(>=|<=|>|<|=|\^|~>?)\s+/g, "$1").trim().split(/\s+/).filter(Boolean);
  if (tokens.length === 0) return out;
  for (const t of tokens) {
    const m = /^(>=|<=|>|<|=|\^|~>?)?(.*)$/.exec(t);
    const op = m[1] ?? "";
    const n = partial(m[2]);
    if (n.length === 0) {
      if (op === "<" || op === ">") out.push(["<", [0, 0, 0]]); // matches nothing
      continue;
    }
    const p = pad(n);
    switch (op) {
      case "^": {
        out.push([">=", p]);
        const i = p[0] > 0 || n.length === 1 ? 0 : p[1] > 0 || n.length === 2 ? 1 : 2;
        out.push(["<", bump(p, i)]);
        break;
      }
      case "~":
      case "~>":
        out.push([">=", p], ["<", bump(p, n.length === 1 ? 0 : 1)]);
        break;
      case ">":
        out.push(n.length === 3 ? [">", p] : [">=", bump(p, n.length - 1)]);
        break;
      case "<=":
        out.push(n.length === 3 ? ["<=", p] : ["<", bump(p, n.length - 1)]);
        break;
      case ">=":
      case "<":
        out.push([op, p]);
        break;
      default:
        if (n.length === 3) out.push(["=", p]);
        else out.push([">=", p], ["<", bump(p, n.length - 1)]);
    }
  }
  return out;
}

/** Parses a range; throws on syntax it does not understand. */
export function parseRange(range) {
  return String(range)
    .split("||")
    .map((s) => comparators(s));
}

export function satisfies(version, sets) {
  const v = parseVersion(version);
  if (!v) return false;
  return sets.some((set) =>
    set.every(([op, w]) => {
      const c = cmp(v, w);
      return op === ">=" ? c >= 0 : op === "<=" ? c <= 0 : op === ">" ? c > 0 : op === "<" ? c < 0 : c === 0;
    }),
  );
}

/** Highest of `versions` within `range`, or null. */
export function maxSatisfying(versions, range) {
  const sets = parseRange(range);
  let best = null;
  for (const v of versions) {
    if (!satisfies(v, sets)) continue;
    if (best === null || cmp(parseVersion(v), parseVersion(best)) > 0) best = v;
  }
  return best;
}
