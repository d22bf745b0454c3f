// Dev-dependency pruning for node_modules trees that no lockfile marks (yarn, pnpm):
// keep what the app's production dependencies reach by Node's own module resolution,
// remove the rest. One rule for every layout: npm/yarn's hoisted trees with nested
// node_modules, and pnpm's isolated one, where node_modules/<dep> is a symlink into
// .pnpm/<id>/node_modules/<dep> and a package's own dependencies are symlinks beside it.
//
// Invariant: only removes (rm, unlink, rmdir), never writes a file. The tree is usually
// a hard-link copy of the cached full tree; writing into a file would change both.
import * as fs from "node:fs/promises";
import * as path from "node:path";

const depNames = (m) => [...new Set([m?.dependencies, m?.optionalDependencies, m?.peerDependencies].flatMap((d) => (d && typeof d === "object" ? Object.keys(d) : [])))];

async function readManifest(dir) {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, "package.json"), "utf8"));
  } catch {
    return null;
  }
}

const inside = (root, p) => p === root || p.startsWith(root + path.sep);

/**
 * Removes from `root` (a node_modules directory) every package that `manifest`'s
 * dependencies and optionalDependencies cannot reach, following each kept package's
 * dependencies, optionalDependencies and peerDependencies. Returns the number of
 * package directories removed.
 */
export async function pruneUnreachable(root, manifest) {
  root = await fs.realpath(root);
  const keep = new Set(); // realpaths of reachable package directories
  const bins = new Set(); // bin names of kept packages
  const queue = [{ from: path.dirname(root), names: Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies }) }];
  while (queue.length) {
    const { from, names } = queue.pop();
    for (const name of names) {
      const found = await resolvePackage(root, from, name);
      if (found === null || keep.has(found)) continue;
      keep.add(found);
      const m = await readManifest(found);
      if (typeof m?.bin === "string") bins.add(m.name?.split("/").pop() ?? name.split("/").pop());
      else if (m?.bin && typeof m.bin === "object") for (const b of Object.keys(m.bin)) bins.add(b);
      queue.push({ from: found, names: depNames(m) });
    }
  }

  let removed = 0;
  const links = [];
  const binDirs = [];
  /** Sweeps one node_modules directory; returns whether a real package is left in it. */
  async function sweep(dir) {
    let left = false;
    for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      if (e.name === ".bin") binDirs.push(p);
      else if (e.name === ".pnpm" && e.isDirectory()) await sweepStore(p);
      else if (e.name.startsWith(".")) continue; // .modules.yaml, .yarn-state.yml, .package-lock.json, ...
      else if (e.name.startsWith("@") && e.isDirectory()) {
        let scopeLeft = false;
        for (const s of await fs.readdir(p, { withFileTypes: true })) if (await visit(path.join(p, s.name), s)) scopeLeft = true;
        left ||= scopeLeft;
      } else if (await visit(p, e)) left = true;
    }
    return left;
  }
  async function visit(p, e) {
    if (e.isSymbolicLink()) {
      links.push(p);
      return false;
    }
    if (!e.isDirectory()) return false;
    if (!keep.has(p)) {
      await fs.rm(p, { recursive: true, force: true });
      removed++;
      return false;
    }
    await sweep(path.join(p, "node_modules"));
    return true;
  }
  /** pnpm's virtual store: one .pnpm/<id>/node_modules per package; ids holding no kept package go whole. */
  async function sweepStore(store) {
    for (const e of await fs.readdir(store, { withFileTypes: true })) {
      const p = path.join(store, e.name);
      if (!e.isDirectory()) continue;
      if (e.name === "node_modules") await sweep(p); // hoisted links (hoist-pattern)
      else if (!(await sweep(path.join(p, "node_modules")))) await fs.rm(p, { recursive: true, force: true });
    }
  }
  await sweep(root);

  // Links whose target went, and bins of removed packages: dangling symlinks (npm, yarn)
  // or pnpm's shell shims, which are files named after the bin.
  for (const l of links) if (!(await fs.stat(l).catch(() => null))) await fs.rm(l, { force: true });
  for (const d of binDirs) {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      const gone = e.isSymbolicLink() ? !(await fs.stat(p).catch(() => null)) : !bins.has(e.name.replace(/\.(cmd|ps1)$/, ""));
      if (gone) await fs.rm(p, { force: true });
    }
  }
  for (const e of await fs.readdir(root, { withFileTypes: true })) {
    if (e.name.startsWith("@") && e.isDirectory()) await fs.rmdir(path.join(root, e.name)).catch(() => {});
  }
  return removed;
}

/**
 * Node's lookup for `name` required from directory `from` (a package's realpath):
 * `<dir>/node_modules/<name>` for `from` and each ancestor not itself named
 * node_modules, stopping at `root`. Returns the package's realpath, or null.
 */
async function resolvePackage(root, from, name) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (path.basename(dir) !== "node_modules") {
      const candidate = path.join(dir, "node_modules", name);
      if (inside(root, path.join(dir, "node_modules"))) {
        const real = await fs.realpath(candidate).catch(() => null);
        if (real !== null && inside(root, real) && (await fs.stat(real).catch(() => null))?.isDirectory()) return real;
      }
    }
    if (!inside(root, dir) && dir !== path.dirname(root)) return null;
    if (dir === path.dirname(root)) return null;
  }
}
