// Which package manager an app uses (its lockfile decides), which yarn or pnpm release
// it gets (package.json `packageManager`, else a default that reads its lockfile), and
// the layer holding that release, downloaded from the npm registry like node itself.
//
// Supported: npm; yarn classic (1.x, package `yarn`); yarn 2+ ("berry", package
// `@yarnpkg/cli-dist`) with `nodeLinker: node-modules` only; pnpm releases published as
// JavaScript (up to 11.x) with its default isolated or the hoisted node-linker. Anything
// else fails the build with a message saying what to change, rather than producing a
// launch image whose node_modules does not match what the app expects.
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as os from "node:os";
import { info, warn, exists, layerToml, readLayerMetadata, run, fetchOk, download, maxSatisfying, parseRange, parseVersion, satisfies } from "./util.mjs";

/** Lockfile → manager, in the order a lockfile wins when an app has several. */
const LOCKFILES = [
  ["pnpm-lock.yaml", "pnpm"],
  ["yarn.lock", "yarn"],
  ["npm-shrinkwrap.json", "npm"],
  ["package-lock.json", "npm"],
];

/**
 * pnpm lockfileVersion → the release line used when package.json names none: the newest
 * line that reads (and would write) that lockfile. pnpm 9, 10 and 11 all write '9.0';
 * 10.x is the newest of them that runs on every Node.js the buildpack offers (11 needs
 * node >= 22.13).
 */
const PNPM_DEFAULTS = [
  [/^9\./, "10.x"],
  [/^6\./, "8.x"],
  [/^5\.4/, "7.x"],
  [/^5\.3/, "6.x"],
];
const PNPM_FALLBACK = "10.x";
/** pnpm 12 is a native binary in optional per-platform packages; not installed here (see README). */
const PNPM_NEWEST_SUPPORTED_MAJOR = 11;

export class Unsupported extends Error {}

/**
 * The app's package manager: `{ name, lockfile }`, plus for yarn/pnpm `tool` (the
 * registry package), `spec` (version or range wanted), `specFrom` (who asked) and
 * `hash` (packageManager's `+<algo>.<hex>` suffix, if any).
 */
export async function detectManager(appDir, pkg, pEnv) {
  const found = [];
  for (const [file, name] of LOCKFILES) if (await exists(path.join(appDir, file))) found.push({ file, name });
  const declared = parsePackageManager(pkg.packageManager);
  if (found.length > 1) {
    warn(`Found ${found.map((f) => f.file).join(", ")}: using ${found[0].file} (${found[0].name}).`);
    warn("Delete the lockfiles of the package managers the app does not use.");
  }
  if (found.length === 0) {
    if (declared && declared.name !== "npm") warn(`packageManager (package.json) names ${declared.name}, but there is no ${declared.name === "pnpm" ? "pnpm-lock.yaml" : "yarn.lock"}; installing with npm.`);
    return { name: "npm", lockfile: null, declared };
  }
  const { file, name } = found[0];
  if (declared && declared.name !== name) {
    warn(`packageManager (package.json) names ${declared.name}, but the lockfile is ${file}; installing with ${name}.`);
  }
  const own = declared?.name === name ? declared : null;
  if (name === "npm") return { name, lockfile: file, declared: own };

  const lock = await fs.readFile(path.join(appDir, file), "utf8");
  const from = own ? "packageManager (package.json)" : null;
  if (name === "yarn") {
    const berry = /^__metadata:/m.test(lock);
    const spec = own?.version ?? (berry ? "4.x" : "1.x");
    const major = parseInt(spec, 10);
    if (own && berry && major === 1) throw new Unsupported(`yarn.lock is a yarn 2+ lockfile, but packageManager asks for yarn ${spec}: regenerate yarn.lock with yarn ${spec}, or name the yarn that wrote it.`);
    if (own && !berry && major >= 2) throw new Unsupported(`yarn.lock is a yarn classic (v1) lockfile, but packageManager asks for yarn ${spec}: run \`yarn install\` with yarn ${spec} and commit the yarn.lock it writes.`);
    if (berry) await requireNodeModulesLinker(appDir, pEnv);
    return {
      name, lockfile: file, berry, spec, hash: own?.hash,
      tool: berry ? "@yarnpkg/cli-dist" : "yarn",
      specFrom: from ?? `default for a yarn ${berry ? "2+" : "classic"} yarn.lock`,
    };
  }
  const lockfileVersion = /^lockfileVersion:\s*['"]?([\d.]+)/m.exec(lock)?.[1] ?? "unknown";
  const npmrc = await fs.readFile(path.join(appDir, ".npmrc"), "utf8").catch(() => "");
  if (/^\s*node-linker\s*=\s*pnp\s*$/m.test(npmrc)) throw new Unsupported("pnpm's Plug'n'Play node-linker (.npmrc node-linker=pnp) is not supported: remove it to get pnpm's default node_modules layout.");
  let spec = own?.version;
  let specFrom = from;
  if (!spec) {
    spec = PNPM_DEFAULTS.find(([re]) => re.test(lockfileVersion))?.[1];
    specFrom = `default for pnpm-lock.yaml lockfileVersion ${lockfileVersion}`;
    if (!spec) {
      warn(`pnpm-lock.yaml has lockfileVersion ${lockfileVersion}, which this buildpack does not know; trying pnpm ${PNPM_FALLBACK}.`);
      spec = PNPM_FALLBACK;
    }
  }
  return { name, lockfile: file, lockfileVersion, spec, specFrom, hash: own?.hash, tool: "pnpm" };
}

function parsePackageManager(v) {
  if (v === undefined) return null;
  const m = typeof v === "string" ? /^(npm|yarn|pnpm)@([^+\s]+)(?:\+([a-z0-9]+)\.([0-9a-f]+))?$/i.exec(v.trim()) : null;
  if (!m) {
    warn(`packageManager (package.json) is ${JSON.stringify(v)}, not <npm|yarn|pnpm>@<version>; ignoring it.`);
    return null;
  }
  return { name: m[1], version: m[2], hash: m[3] ? { algo: m[3].toLowerCase(), hex: m[4].toLowerCase() } : null };
}

/**
 * Yarn 2+ defaults to Plug'n'Play, which has no node_modules and needs yarn's loader at
 * run time; the launch image here is node + node_modules, so only the node-modules
 * linker is accepted. A YARN_NODE_LINKER config var wins over .yarnrc.yml, as in yarn.
 */
async function requireNodeModulesLinker(appDir, pEnv) {
  const rc = await fs.readFile(path.join(appDir, ".yarnrc.yml"), "utf8").catch(() => "");
  const fromRc = /^nodeLinker:\s*["']?([\w-]+)["']?\s*(#.*)?$/m.exec(rc)?.[1];
  const linker = pEnv.YARN_NODE_LINKER?.trim() || fromRc || "pnp";
  if (linker === "node-modules") return;
  const where = pEnv.YARN_NODE_LINKER ? "the YARN_NODE_LINKER config var" : fromRc ? ".yarnrc.yml" : "yarn's default, as .yarnrc.yml sets no nodeLinker";
  throw new Unsupported(
    `Yarn's ${linker === "pnp" ? "Plug'n'Play" : linker} linker (nodeLinker: ${linker}, from ${where}) is not supported. ` +
      "Add `nodeLinker: node-modules` to .yarnrc.yml and commit it (yarn.lock stays the same).",
  );
}

/**
 * Environment for running the manager: its caches in the npm-cache layer, no update
 * checks, no telemetry, and no switching to another release behind the buildpack's back
 * (the release is chosen here and reported). Config vars the app set win.
 */
export function managerEnv(pm, env, cacheDir, pEnv, registry) {
  const set = (k, v) => {
    if (env[k] === undefined) env[k] = v;
  };
  if (pm.name === "yarn" && !pm.berry) {
    set("YARN_CACHE_FOLDER", path.join(cacheDir, "yarn"));
    set("YARN_DISABLE_SELF_UPDATE_CHECK", "true");
    set("SKIP_YARN_COREPACK_CHECK", "1");
  } else if (pm.name === "yarn") {
    set("YARN_GLOBAL_FOLDER", path.join(cacheDir, "yarn-berry"));
    set("YARN_ENABLE_TELEMETRY", "0");
    set("YARN_ENABLE_PROGRESS_BARS", "false");
    set("YARN_ENABLE_INLINE_BUILDS", "true");
    if (pEnv.NPM_CONFIG_REGISTRY ?? pEnv.npm_config_registry) set("YARN_NPM_REGISTRY_SERVER", registry);
  } else if (pm.name === "pnpm") {
    for (const prefix of ["npm_config_", "pnpm_config_"]) {
      set(`${prefix}store_dir`, path.join(cacheDir, "pnpm-store"));
      set(`${prefix}manage_package_manager_versions`, "false");
      set(`${prefix}package_manager_strict`, "false");
      set(`${prefix}update_notifier`, "false");
    }
    set("pnpm_config_pm_on_fail", "ignore"); // pnpm 11's name for not switching to packageManager's release
  }
}

// ------------------------------------------------------------------ the release itself

/**
 * Makes layer `<pm.name>` (build + cache) hold the release of `pm.tool` that `pm.spec`
 * asks for, keyed by package + version: a rebuild with the same version downloads
 * nothing, and with an exact version asks the registry nothing. Returns
 * `{ version, bin }` with `bin` the layer's bin dir.
 */
export async function installManager(pm, { layersDir, registry, nodeVersion }) {
  const dir = path.join(layersDir, pm.name);
  const binDir = path.join(dir, "bin");
  const entry = path.join(binDir, pm.name);
  const cached = await readLayerMetadata(layersDir, pm.name);
  const cachedOk = async (version) => cached?.package === pm.tool && cached.version === version && (await exists(entry));
  const keep = async (version) => {
    info(`Using cached ${pm.name} ${version}`);
    await fs.writeFile(path.join(layersDir, `${pm.name}.toml`), layerToml({ build: true, cache: true }, cached));
    return { version, bin: binDir };
  };

  info(`${pm.specFrom}:  ${pm.name}@${pm.spec}`);
  if (parseVersion(pm.spec) && (await cachedOk(pm.spec))) return keep(pm.spec);
  info(`Resolving ${pm.name} version ${pm.spec}...`);
  let doc;
  try {
    doc = await resolveRelease(pm, registry);
  } catch (e) {
    if (cached?.package === pm.tool && (await exists(entry))) {
      warn(`Could not resolve ${pm.name} ${pm.spec} (${e.message}); keeping the cached ${pm.name} ${cached.version}.`);
      return keep(cached.version);
    }
    throw new Error(`Could not resolve ${pm.tool}@${pm.spec} from ${registry}: ${e.message}`);
  }
  if (doc.engines?.node) {
    let ok = true;
    try {
      ok = satisfies(nodeVersion, parseRange(doc.engines.node));
    } catch {
      // a range this parser does not know: let the tool decide
    }
    if (!ok) warn(`${pm.name} ${doc.version} declares engines.node ${JSON.stringify(doc.engines.node)}; it will run on node ${nodeVersion} anyway.`);
  }
  if (await cachedOk(doc.version)) return keep(doc.version);

  info(`Downloading and installing ${pm.name} ${doc.version}...`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(path.join(layersDir, `${pm.name}.toml`), { force: true });
  const pkgDir = path.join(dir, "lib", "node_modules", ...pm.tool.split("/"));
  await fs.mkdir(pkgDir, { recursive: true });
  await fs.mkdir(binDir, { recursive: true });
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), `berth-${pm.name}-`));
  try {
    const tgz = await download(doc.dist, tmp);
    if (pm.hash && doc.version === pm.spec) {
      const got = createHash(pm.hash.algo).update(await fs.readFile(tgz)).digest("hex");
      if (got !== pm.hash.hex) throw new Error(`${pm.tool}@${doc.version} from ${registry} does not match the ${pm.hash.algo} hash in packageManager (package.json)`);
    }
    await run("tar", ["-xzf", tgz, "-C", pkgDir, "--strip-components=1", "--no-same-owner"]);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  const manifest = JSON.parse(await fs.readFile(path.join(pkgDir, "package.json"), "utf8"));
  const bins = typeof manifest.bin === "string" ? { [pm.name]: manifest.bin } : (manifest.bin ?? {});
  for (const [name, rel] of Object.entries(bins)) {
    if (!/^[\w.-]+$/.test(name)) continue;
    const target = path.join(pkgDir, rel);
    if (!target.startsWith(pkgDir + path.sep)) continue;
    await fs.chmod(target, 0o755);
    await fs.symlink(path.relative(binDir, target), path.join(binDir, name));
  }
  if (!(await exists(entry))) throw new Error(`${pm.tool}@${doc.version} has no \`${pm.name}\` executable`);
  await fs.writeFile(path.join(layersDir, `${pm.name}.toml`), layerToml({ build: true, cache: true }, { package: pm.tool, version: doc.version }));
  return { version: doc.version, bin: binDir };
}

/** The registry's version document for what `pm.spec` asks, saying so when it picks another. */
async function resolveRelease(pm, registry) {
  const name = pm.tool.replace("/", "%2f");
  const exact = parseVersion(pm.spec) ? pm.spec : null;
  if (exact && runnable(pm, exact)) {
    const res = await fetch(`${registry}/${name}/${exact}`, { signal: AbortSignal.timeout(20_000) });
    if (res.ok) return res.json();
    if (res.status !== 404) throw new Error(`GET ${registry}/${pm.tool}/${exact}: HTTP ${res.status}`);
  }
  const res = await fetchOk(`${registry}/${name}`, { headers: { accept: "application/vnd.npm.install-v1+json" } }, 30_000);
  const versions = (await res.json()).versions ?? {};
  const all = Object.keys(versions);
  const usable = all.filter((v) => runnable(pm, v));
  let version = null;
  if (!exact) {
    try {
      version = maxSatisfying(usable, pm.spec);
    } catch {
      version = null; // not a range this parser reads: reported as unavailable below
    }
  }
  if (version !== null) return versions[version];

  const major = /^\d+/.exec(pm.spec) ? parseInt(pm.spec, 10) : null;
  const lines = [];
  if (major !== null) lines.push(runnable(pm, String(major)) ? `${major}.x` : `${PNPM_NEWEST_SUPPORTED_MAJOR}.x`);
  lines.push(defaultLine(pm));
  const instead = lines.find((l) => maxSatisfying(usable, l) !== null);
  if (!instead) throw new Error(`no ${pm.tool} release matches ${lines.join(" or ")}`);
  const picked = maxSatisfying(usable, instead);
  const why = !exact ? "which matches no release this buildpack can install" : all.includes(exact) ? "a native-binary release this buildpack does not install" : "which the registry does not have";
  warn(`${pm.specFrom} asks for ${pm.name} ${pm.spec}, ${why}.`);
  warn(`Using ${pm.name} ${picked} (${instead}) instead.`);
  return versions[picked];
}

/** pnpm from 12 on is a native binary shipped in per-platform optional packages. */
const runnable = (pm, version) => pm.name !== "pnpm" || parseInt(version, 10) <= PNPM_NEWEST_SUPPORTED_MAJOR;

function defaultLine(pm) {
  if (pm.name === "yarn") return pm.berry ? "4.x" : "1.x";
  return PNPM_FALLBACK;
}
