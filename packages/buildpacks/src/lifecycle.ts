/**
 * A Cloud Native Buildpacks-style lifecycle: detect → restore → build → cache,
 * producing layer directories and process types. Writing the image is not done
 * here (packages/oci does it from the result; see README "Image layout").
 *
 * Subset of Buildpack API 0.10 implemented (the README lists what is left out):
 * - detect: bin/detect in the app dir (read-only), CNB_PLATFORM_DIR, CNB_BUILD_PLAN_PATH;
 *   exit 0 pass, 100 fail, anything else errors the build. Plans with [[provides]],
 *   [[requires]] and [[or]] alternatives are resolved per group; optional buildpacks
 *   that fail or cannot fit the plan drop out.
 * - user-provided env: <platform>/env/<NAME> files (the app's config vars) are also set in
 *   the environment of bin/detect and bin/build unless buildpack.toml has
 *   `[buildpack] clear-env = true`; names the lifecycle owns (USER_ENV_RESERVED) are not.
 * - build: bin/build with CNB_LAYERS_DIR, CNB_PLATFORM_DIR, CNB_BP_PLAN_PATH; layers
 *   are <layers>/<id>/<name>/ with <name>.toml [types] launch/build/cache and [metadata];
 *   launch.toml [[processes]]; layer bin/, lib/, env/, env.build/, env.launch/.
 * - cache: layers with cache = true are restored (contents, and <name>.toml with
 *   [metadata] only) before build and saved after. Both are renames, so a layer costs the
 *   same whatever its number of files (a real node_modules has tens of thousands): the
 *   cache holds the last successful build's layers, and while a build runs they are in its
 *   layers dir. After a build the cached layers are back in the cache: LayerResult.dir
 *   says where, and the layers dir keeps a symlink in their place.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { BerthError } from "@berth/core";
import { spawnExec, type Exec, type Mount } from "./exec.ts";
import { exists } from "./extract.ts";
import { asTable, parseToml, stringifyToml, type TomlTable, type TomlValue } from "./toml.ts";

export interface BuildpackRef {
  /** Directory with buildpack.toml, bin/detect and bin/build. */
  dir: string;
  /** An optional buildpack may fail detection without failing its group. */
  optional?: boolean;
}

/** Groups tried in order; the first whose non-optional buildpacks all pass wins. */
export type Order = BuildpackRef[][];

export interface BuildpackInfo {
  id: string;
  version: string;
  name: string;
  /** What detection looks for, for the no-match message ([metadata] detects). */
  detects: string;
  dir: string;
  /** `[buildpack] clear-env = true`: config vars only as <platform>/env files, not in the environment. */
  clearEnv: boolean;
}

export interface LayerResult {
  bpId: string;
  name: string;
  /**
   * Host directory of the layer's contents: in the cache dir for cache = true layers
   * (until the next build with that cache takes it), else in the layers dir.
   */
  dir: string;
  launch: boolean;
  build: boolean;
  cache: boolean;
  metadata: TomlTable;
  /** Restored from the cache and left untouched by the buildpack. */
  reused: boolean;
}

export interface ProcessType {
  type: string;
  /** A shell command line, run with /bin/sh -c in the app directory. */
  command: string;
  default: boolean;
}

/** One change a launch layer makes to the environment, CNB env-file semantics. */
export interface EnvOp {
  name: string;
  action: "override" | "default" | "prepend" | "append";
  value: string;
  delim: string;
}

export interface BuildResult {
  buildpacks: { id: string; version: string }[];
  layers: LayerResult[];
  processes: ProcessType[];
  /** Launch-time environment changes in layer order, with host paths (launchEnv() maps them). */
  env: EnvOp[];
  /** Host paths the result refers to. */
  appDir: string;
  layersDir: string;
}

export interface LifecycleOptions {
  appDir: string;
  /** Must be a sibling of appDir named "layers", as in the image (/workspace, /layers). */
  layersDir: string;
  /** Holds env/<NAME> files with the app's config vars (read once, when the run starts). */
  platformDir: string;
  cacheDir: string;
  order: Order;
  exec?: Exec;
  onLine?: (line: string) => void;
  /** Node binary that runs `#!/usr/bin/env node` buildpack scripts. Default: this process's. */
  node?: string;
  /** Scratch space for plans and HOME; a fresh directory is made inside it. */
  tmpDir?: string;
  detectTimeoutMs?: number;
  buildTimeoutMs?: number;
}

/** Paths as the buildpack processes see them (identical to host paths without a sandbox). */
const SANDBOX = { app: "/workspace", layers: "/layers", platform: "/platform", buildpacks: "/cnb/buildpacks", plan: "/cnb/plan", home: "/home/cnb", tools: "/cnb/tools" };
const BASE_PATH = "/usr/local/bin:/usr/bin:/bin";

/** `berth/nodejs` → `berth_nodejs`, the CNB escaping for per-buildpack directories. */
export function escapeId(id: string): string {
  return id.replace(/\//g, "_");
}

export async function readBuildpack(dir: string): Promise<BuildpackInfo> {
  const file = path.join(dir, "buildpack.toml");
  let t: TomlTable;
  try {
    t = parseToml(await fs.readFile(file, "utf8"));
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  const bp = asTable(t.buildpack);
  const id = typeof bp.id === "string" ? bp.id : "";
  if (!/^[a-z0-9][a-z0-9._/-]*$/.test(id)) throw new Error(`${file}: invalid [buildpack] id ${JSON.stringify(bp.id)}`);
  const meta = asTable(t.metadata);
  return {
    id,
    version: typeof bp.version === "string" ? bp.version : "0.0.0",
    name: typeof bp.name === "string" ? bp.name : id,
    detects: typeof meta.detects === "string" ? meta.detects : "its own detection rules",
    dir: path.resolve(dir),
    clearEnv: bp["clear-env"] === true,
  };
}

interface PlanEntry {
  name: string;
  metadata: TomlTable;
}
interface PlanAlt {
  provides: PlanEntry[];
  requires: PlanEntry[];
}
interface Detected {
  bp: BuildpackInfo;
  alts: PlanAlt[];
}
export interface DetectResult {
  group: { bp: BuildpackInfo; plan: PlanEntry[] }[];
}

/** Shared state of one lifecycle run. */
interface Run {
  o: LifecycleOptions;
  exec: Exec;
  tmp: string;
  line: (l: string) => void;
  /** The user-provided variables set in the environment of buildpacks without clear-env. */
  userEnv: Record<string, string>;
}

/** Runs detection, then builds with the winning group. Throws BerthError("build_failed") for user failures. */
export async function build(o: LifecycleOptions): Promise<BuildResult> {
  const appDir = path.resolve(o.appDir);
  const layersDir = path.resolve(o.layersDir);
  if (path.dirname(appDir) !== path.dirname(layersDir) || path.basename(layersDir) !== "layers") {
    throw new Error(`layersDir must be a sibling of appDir named "layers" (image layout /workspace + /layers); got ${appDir} and ${layersDir}`);
  }
  const opts = { ...o, appDir, layersDir, platformDir: path.resolve(o.platformDir), cacheDir: path.resolve(o.cacheDir) };
  const tmp = await fs.mkdtemp(path.join(o.tmpDir ?? os.tmpdir(), "berth-lifecycle-"));
  const run: Run = { o: opts, exec: o.exec ?? spawnExec(), tmp, line: o.onLine ?? (() => {}), userEnv: {} };
  try {
    await fs.mkdir(layersDir, { recursive: true });
    await fs.mkdir(opts.cacheDir, { recursive: true });
    await fs.mkdir(path.join(opts.platformDir, "env"), { recursive: true });
    run.userEnv = await readUserEnv(opts.platformDir, run.line);
    await fs.mkdir(path.join(tmp, "home"), { recursive: true });
    await fs.mkdir(path.join(tmp, "tools"), { recursive: true });
    await fs.symlink(o.node ?? process.execPath, path.join(tmp, "tools", "node"));
    const detected = await detectWith(run);
    return await buildGroup(run, detected);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** Runs detection only (exported for tests and `berth buildpacks:detect`-style tooling). */
export async function detect(o: LifecycleOptions): Promise<DetectResult> {
  const tmp = await fs.mkdtemp(path.join(o.tmpDir ?? os.tmpdir(), "berth-detect-"));
  try {
    await fs.mkdir(path.join(tmp, "home"));
    await fs.mkdir(path.join(tmp, "tools"));
    await fs.symlink(o.node ?? process.execPath, path.join(tmp, "tools", "node"));
    await fs.mkdir(path.join(o.platformDir, "env"), { recursive: true });
    const line = o.onLine ?? (() => {});
    const run: Run = { o: { ...o, appDir: path.resolve(o.appDir), platformDir: path.resolve(o.platformDir) }, exec: o.exec ?? spawnExec(), tmp, line, userEnv: await readUserEnv(o.platformDir, line) };
    return await detectWith(run);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------- detect

async function detectWith(run: Run): Promise<DetectResult> {
  const infos = new Map<string, BuildpackInfo>();
  const results = new Map<string, Detected | null>();
  const tried: BuildpackInfo[] = [];
  for (const group of run.o.order) {
    const members: { info: BuildpackInfo; optional: boolean; det: Detected | null }[] = [];
    let failed = false;
    for (const ref of group) {
      const dir = path.resolve(ref.dir);
      let info = infos.get(dir);
      if (!info) {
        info = await readBuildpack(dir);
        infos.set(dir, info);
      }
      if (!results.has(dir)) {
        results.set(dir, await detectOne(run, info));
        if (!tried.some((t) => t.id === info!.id)) tried.push(info);
      }
      const det = results.get(dir) ?? null;
      if (det === null && !ref.optional) {
        failed = true;
        break;
      }
      members.push({ info, optional: ref.optional ?? false, det });
    }
    if (failed) continue;
    const resolved = resolvePlan(members.filter((m) => m.det !== null).map((m) => ({ det: m.det!, optional: m.optional })));
    if (resolved) return resolved;
  }
  const list = tried.map((b) => `  - ${b.name} (${b.id}): looks for ${b.detects}`).join("\n");
  throw new BerthError("build_failed", `No buildpack could build this app. Tried, in order:\n${list}\nAdd one of those files, or set a buildpack for the app.`);
}

async function detectOne(run: Run, bp: BuildpackInfo): Promise<Detected | null> {
  const planHost = path.join(run.tmp, "plans", escapeId(bp.id));
  await fs.mkdir(planHost, { recursive: true });
  const v = seen(run, bp, planHost);
  const planFile = path.posix.join(v.plan, "plan.toml");
  const output: string[] = [];
  const res = await run.exec.run({
    argv: [path.posix.join(v.buildpack, "bin", "detect"), v.platform, planFile],
    cwd: v.app,
    env: withUserEnv(run, bp, baseEnv(run, v, { CNB_PLATFORM_DIR: v.platform, CNB_BUILD_PLAN_PATH: planFile, CNB_BUILDPACK_DIR: v.buildpack })),
    mounts: mounts(run, v, bp, planHost, { appWritable: false }),
    timeoutMs: run.o.detectTimeoutMs ?? 60_000,
    onLine: (l) => output.push(l),
  });
  if (res.code === 100) return null;
  if (res.code !== 0) {
    for (const l of output.slice(-20)) run.line(`       ${l}`);
    const why = res.timedOut ? "timed out" : res.code === null ? `was killed by ${res.signal}` : `exited with code ${res.code}`;
    throw new BerthError("build_failed", `Detection by the ${bp.name} buildpack (${bp.id}) ${why}.`);
  }
  let text = "";
  try {
    text = await fs.readFile(path.join(planHost, "plan.toml"), "utf8");
  } catch {
    // no plan written: passes with an empty plan
  }
  let plan: TomlTable;
  try {
    plan = parseToml(text);
  } catch (e) {
    throw new BerthError("build_failed", `The ${bp.name} buildpack wrote an invalid build plan: ${(e as Error).message}`);
  }
  const alt = (t: TomlTable): PlanAlt => ({ provides: entries(t.provides), requires: entries(t.requires) });
  const ors = Array.isArray(plan.or) ? plan.or.map((x) => alt(asTable(x))) : [];
  return { bp, alts: [alt(plan), ...ors] };
}

function entries(v: TomlValue | undefined): PlanEntry[] {
  if (!Array.isArray(v)) return [];
  return v.map((x) => asTable(x)).filter((t) => typeof t.name === "string").map((t) => ({ name: t.name as string, metadata: asTable(t.metadata) }));
}

/**
 * Picks one plan alternative per buildpack (optional ones may drop out) so that
 * every require is provided by the same or an earlier buildpack and every
 * provide is required by the same or a later one. Earlier alternatives and
 * including optional buildpacks are preferred.
 */
function resolvePlan(members: { det: Detected; optional: boolean }[]): DetectResult | null {
  const choice: (PlanAlt | null)[] = [];
  let budget = 10_000;
  const valid = (): DetectResult | null => {
    const chosen = members.map((m, i) => ({ bp: m.det.bp, alt: choice[i]! })).filter((c) => c.alt !== null) as { bp: BuildpackInfo; alt: PlanAlt }[];
    if (chosen.length === 0) return null;
    const plans: PlanEntry[][] = chosen.map(() => []);
    for (const [j, c] of chosen.entries()) {
      for (const r of c.alt.requires) {
        const provider = chosen.findIndex((p, i) => i <= j && p.alt.provides.some((x) => x.name === r.name));
        if (provider < 0) return null;
        plans[provider]!.push(r);
      }
    }
    for (const [i, c] of chosen.entries()) {
      for (const p of c.alt.provides) if (!chosen.some((q, j) => j >= i && q.alt.requires.some((r) => r.name === p.name))) return null;
    }
    return { group: chosen.map((c, i) => ({ bp: c.bp, plan: plans[i]! })) };
  };
  const search = (i: number): DetectResult | null => {
    if (--budget < 0) return null;
    if (i === members.length) return valid();
    const m = members[i]!;
    for (const alt of m.det.alts) {
      choice[i] = alt;
      const r = search(i + 1);
      if (r) return r;
    }
    if (m.optional) {
      choice[i] = null;
      const r = search(i + 1);
      if (r) return r;
    }
    return null;
  };
  return search(0);
}

// ---------------------------------------------------------------------------- build

interface Restored {
  /** JSON of the restored [metadata], to tell a reused layer from a rebuilt one. */
  metadata: string;
  ino: number;
  /** When it was moved out of the cache (ms since the epoch), to tell whether a failed build changed it. */
  at: number;
}

async function buildGroup(run: Run, detected: DetectResult): Promise<BuildResult> {
  const { appDir, layersDir, cacheDir } = run.o;
  run.line(`-----> Detected ${detected.group.map((g) => `${g.bp.name} (${g.bp.id}@${g.bp.version})`).join(", ")}`);
  const layers: LayerResult[] = [];
  const processes = new Map<string, ProcessType>();
  const buildEnv: EnvOp[] = [];
  const restoredAll = new Map<string, Map<string, Restored>>();
  /** Buildpacks whose bin/build was started: their restored layers may have been changed. */
  const ran = new Set<string>();
  try {
    for (const { bp, plan } of detected.group) {
      const esc = escapeId(bp.id);
      const bpLayers = path.join(layersDir, esc);
      await fs.rm(bpLayers, { recursive: true, force: true });
      await fs.mkdir(bpLayers, { recursive: true });
      const restored = await restoreCache(path.join(cacheDir, esc), bpLayers);
      restoredAll.set(bp.id, restored);

      const planHost = path.join(run.tmp, "plans", esc);
      await fs.mkdir(planHost, { recursive: true });
      await fs.writeFile(path.join(planHost, "plan.toml"), stringifyToml({ entries: plan.map((e) => ({ name: e.name, metadata: e.metadata })) }));
      const v = seen(run, bp, planHost);
      const planFile = path.posix.join(v.plan, "plan.toml");
      run.line(`-----> Building on the ${bp.name} buildpack`);
      ran.add(bp.id);
      // Earlier buildpacks' build layers, then the user's variables over them (as the CNB lifecycle orders them).
      const env = withUserEnv(run, bp, applyEnv(baseEnv(run, v, { CNB_LAYERS_DIR: v.bpLayers, CNB_PLATFORM_DIR: v.platform, CNB_BP_PLAN_PATH: planFile, CNB_BUILDPACK_DIR: v.buildpack }), buildEnv));
      const res = await run.exec.run({
        argv: [path.posix.join(v.buildpack, "bin", "build"), v.bpLayers, v.platform, planFile],
        cwd: v.app,
        env,
        mounts: mounts(run, v, bp, planHost, { appWritable: true }),
        timeoutMs: run.o.buildTimeoutMs ?? 15 * 60_000,
        onLine: (l) => run.line(heroku(l)),
      });
      if (res.code !== 0) {
        const why = res.timedOut ? `timed out after ${Math.round((run.o.buildTimeoutMs ?? 900_000) / 1000)} s` : res.code === null ? `was killed by ${res.signal}` : `exited with code ${res.code}`;
        run.line(` !     Build failed: the ${bp.name} buildpack ${why}.`);
        throw new BerthError("build_failed", `The ${bp.name} buildpack (${bp.id}) failed: it ${why}.`);
      }

      const bpResults = await collectLayers(bp, bpLayers, restored);
      layers.push(...bpResults);
      for (const l of bpResults) {
        if (l.build) buildEnv.push(...(await layerEnv(l.dir, "build", run.exec.remapsPaths ? path.posix.join(SANDBOX.layers, esc, l.name) : l.dir)));
        if (l.reused) run.line(`       Reusing cached layer ${l.name}`);
      }
      for (const p of await readLaunchToml(path.join(bpLayers, "launch.toml"), bp)) processes.set(p.type, p);
    }

    for (const p of await readProcfile(path.join(appDir, "Procfile"))) {
      const prev = processes.get(p.type);
      processes.set(p.type, { ...p, default: prev?.default ?? false });
    }
    const procs = [...processes.values()];
    if (procs.length > 0 && !procs.some((p) => p.default)) {
      const web = procs.find((p) => p.type === "web");
      if (web) web.default = true;
    }

    const env: EnvOp[] = [];
    for (const l of layers) if (l.launch) env.push(...(await layerEnv(l.dir, "launch", l.dir)));
    await saveCache(cacheDir, detected.group.map((g) => g.bp.id), layers);
    run.line(`-----> Discovering process types`);
    run.line(`       Procfile declares types -> ${procs.map((p) => p.type).join(", ") || "(none)"}`);
    return { buildpacks: detected.group.map((g) => ({ id: g.bp.id, version: g.bp.version })), layers, processes: procs, env, appDir, layersDir };
  } catch (e) {
    await returnUntouched(cacheDir, layersDir, restoredAll, ran);
    throw e;
  }
}

/** Heroku-style line: step headers pass through, the rest is indented 7 spaces. */
function heroku(l: string): string {
  if (l.startsWith("-----> ") || l.startsWith(" !     ") || l.startsWith("       ")) return l;
  return l === "" ? "" : `       ${l}`;
}

async function collectLayers(bp: BuildpackInfo, bpLayers: string, restored: Map<string, Restored>): Promise<LayerResult[]> {
  const out: LayerResult[] = [];
  for (const f of (await fs.readdir(bpLayers)).sort()) {
    if (!f.endsWith(".toml") || ["launch.toml", "build.toml", "store.toml"].includes(f)) continue;
    const name = f.slice(0, -5);
    const tomlPath = path.join(bpLayers, f);
    const dir = path.join(bpLayers, name);
    const text = await fs.readFile(tomlPath, "utf8");
    let t: TomlTable;
    try {
      t = parseToml(text);
    } catch (e) {
      throw new BerthError("build_failed", `The ${bp.name} buildpack wrote an invalid ${f}: ${(e as Error).message}`);
    }
    const types = asTable(t.types);
    const layer = { launch: types.launch === true, build: types.build === true, cache: types.cache === true };
    const st = await fs.stat(dir).catch(() => null);
    if (!layer.launch && !layer.build && !layer.cache) {
      // Per the spec a layer with no types is not kept.
      await fs.rm(dir, { recursive: true, force: true });
      continue;
    }
    if (st === null) await fs.mkdir(dir, { recursive: true });
    const r = restored.get(name);
    const metadata = asTable(t.metadata);
    const reused = r !== undefined && st !== null && r.ino === st.ino && r.metadata === JSON.stringify(metadata) && layer.cache;
    out.push({ bpId: bp.id, name, dir, ...layer, metadata, reused });
  }
  return out;
}

async function readLaunchToml(file: string, bp: BuildpackInfo): Promise<ProcessType[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch {
    return [];
  }
  let t: TomlTable;
  try {
    t = parseToml(text);
  } catch (e) {
    throw new BerthError("build_failed", `The ${bp.name} buildpack wrote an invalid launch.toml: ${(e as Error).message}`);
  }
  const procs = Array.isArray(t.processes) ? t.processes.map((x) => asTable(x)) : [];
  return procs.flatMap((p): ProcessType[] => {
    if (typeof p.type !== "string") return [];
    const args = Array.isArray(p.args) ? p.args.map(String) : [];
    let command: string;
    if (Array.isArray(p.command)) command = [...p.command.map(String), ...args].map(shellQuote).join(" ");
    else if (typeof p.command === "string") command = [p.command, ...args.map(shellQuote)].join(" ");
    else return [];
    return [{ type: p.type, command, default: p.default === true }];
  });
}

/** Parses a Heroku Procfile: `type: command` per line. */
export async function readProcfile(file: string): Promise<ProcessType[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch {
    return [];
  }
  const out: ProcessType[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const m = /^([A-Za-z0-9_-]+):\s*(.*\S)\s*$/.exec(raw);
    if (m) out.push({ type: m[1]!, command: m[2]!, default: false });
  }
  return out;
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------- env

/**
 * Environment changes a layer makes: bin/ → PATH, lib/ → LD_LIBRARY_PATH, then
 * env/ and env.<phase>/ files. `seenDir` is where the process sees the layer.
 */
async function layerEnv(hostDir: string, phase: "build" | "launch", seenDir: string): Promise<EnvOp[]> {
  const ops: EnvOp[] = [];
  if (await isDir(path.join(hostDir, "bin"))) ops.push({ name: "PATH", action: "prepend", value: path.posix.join(seenDir, "bin"), delim: ":" });
  if (await isDir(path.join(hostDir, "lib"))) ops.push({ name: "LD_LIBRARY_PATH", action: "prepend", value: path.posix.join(seenDir, "lib"), delim: ":" });
  for (const sub of ["env", `env.${phase}`]) {
    const dir = path.join(hostDir, sub);
    let files: string[];
    try {
      files = (await fs.readdir(dir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name).sort();
    } catch {
      continue;
    }
    for (const f of files) {
      const m = /^(.+?)(?:\.(override|default|prepend|append|delim))?$/.exec(f)!;
      const name = m[1]!;
      const action = (m[2] ?? "override") as EnvOp["action"] | "delim";
      if (action === "delim") continue;
      const value = await fs.readFile(path.join(dir, f), "utf8");
      const delim = files.includes(`${name}.delim`) ? await fs.readFile(path.join(dir, `${name}.delim`), "utf8") : "";
      ops.push({ name, action, value, delim });
    }
  }
  return ops;
}

/** Applies env ops in order to a copy of `env`. */
export function applyEnv(env: Record<string, string>, ops: EnvOp[]): Record<string, string> {
  const out = { ...env };
  for (const op of ops) {
    const cur = out[op.name];
    switch (op.action) {
      case "override":
        out[op.name] = op.value;
        break;
      case "default":
        if (cur === undefined) out[op.name] = op.value;
        break;
      case "prepend":
        out[op.name] = cur === undefined || cur === "" ? op.value : op.value + op.delim + cur;
        break;
      case "append":
        out[op.name] = cur === undefined || cur === "" ? op.value : cur + op.delim + op.value;
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------- paths and mounts

interface Seen {
  app: string;
  layers: string;
  bpLayers: string;
  platform: string;
  buildpack: string;
  plan: string;
  home: string;
  tools: string;
}

function seen(run: Run, bp: BuildpackInfo, planHost: string): Seen {
  const esc = escapeId(bp.id);
  if (run.exec.remapsPaths) {
    return { ...SANDBOX, bpLayers: path.posix.join(SANDBOX.layers, esc), buildpack: path.posix.join(SANDBOX.buildpacks, esc) };
  }
  return {
    app: run.o.appDir,
    layers: run.o.layersDir,
    bpLayers: path.join(run.o.layersDir, esc),
    platform: run.o.platformDir,
    buildpack: bp.dir,
    plan: planHost,
    home: path.join(run.tmp, "home"),
    tools: path.join(run.tmp, "tools"),
  };
}

function mounts(run: Run, v: Seen, bp: BuildpackInfo, planHost: string, o: { appWritable: boolean }): Mount[] {
  const m: Mount[] = [
    { source: run.o.appDir, target: v.app, writable: o.appWritable },
    { source: run.o.platformDir, target: v.platform, writable: false, owned: true },
    { source: bp.dir, target: v.buildpack, writable: false },
    { source: planHost, target: v.plan, writable: true },
    { source: path.join(run.tmp, "home"), target: v.home, writable: true },
    { source: run.o.node ?? process.execPath, target: path.posix.join(v.tools, "node"), writable: false },
  ];
  if (o.appWritable) {
    m.push({ source: run.o.layersDir, target: v.layers, writable: false });
    m.push({ source: path.join(run.o.layersDir, escapeId(bp.id)), target: v.bpLayers, writable: true });
  }
  // Without a sandbox the node binary is reached through the tools dir symlink.
  return run.exec.remapsPaths ? m : m.filter((x) => x.target !== path.posix.join(v.tools, "node"));
}

/** The minimal environment every buildpack process starts from: no host variables, no config vars. */
function baseEnv(run: Run, v: Seen, extra: Record<string, string>): Record<string, string> {
  return { PATH: `${v.tools}:${BASE_PATH}`, HOME: v.home, LANG: "C.UTF-8", CNB_APP_DIR: v.app, CNB_STACK_ID: "berth-24", CNB_TARGET_OS: "linux", CNB_TARGET_ARCH: "amd64", ...extra };
}

/**
 * Names a user-provided variable may not set in a buildpack's environment (they stay
 * readable as <platform>/env files): CNB_* are the lifecycle's contract paths; PATH
 * must keep the lifecycle's tools dir (its `node`) and earlier layers' bin/ first;
 * HOME is the only writable home; LD_LIBRARY_PATH carries earlier layers' lib/; and
 * LD_PRELOAD meant for the running app (a library in a layer) would break every tool
 * of the build. The CNB lifecycle prepends a user PATH instead; Heroku's buildpacks
 * likewise skip PATH and LD_PRELOAD when they export config vars.
 */
export const USER_ENV_RESERVED: ReadonlySet<string> = new Set(["PATH", "HOME", "LD_LIBRARY_PATH", "LD_PRELOAD"]);
const isReserved = (name: string) => name.startsWith("CNB_") || USER_ENV_RESERVED.has(name);

/**
 * Reads <platform>/env/<NAME> files once per run. Reserved names and values no
 * process environment can hold (a NUL byte) are left out of the environment, and
 * the build output says so once, naming them (never their values).
 */
async function readUserEnv(platformDir: string, line: (l: string) => void): Promise<Record<string, string>> {
  const dir = path.join(platformDir, "env");
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return {};
  }
  const env: Record<string, string> = {};
  const skipped: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!e.isFile() || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(e.name)) continue;
    const value = await fs.readFile(path.join(dir, e.name), "utf8");
    if (isReserved(e.name)) skipped.push(`${e.name} (set by the platform)`);
    else if (value.includes("\0")) skipped.push(`${e.name} (contains a NUL byte)`);
    else env[e.name] = value;
  }
  if (skipped.length > 0) line(`       Not set in the build environment: ${skipped.join(", ")}; buildpacks can read them in $CNB_PLATFORM_DIR/env.`);
  return env;
}

/** The user's variables over `env`, unless the buildpack asked for a clear environment; reserved names were never read into userEnv. */
function withUserEnv(run: Run, bp: BuildpackInfo, env: Record<string, string>): Record<string, string> {
  return bp.clearEnv ? env : { ...env, ...run.userEnv };
}

// ---------------------------------------------------------------------------- cache

/**
 * Moves cached layers (cache = true) into the buildpack's layers dir, with a
 * <name>.toml holding their [metadata] only: as in Buildpack API 0.6+, types are not
 * restored, so a buildpack keeps a layer by writing its types again and drops it by
 * doing nothing. The cache's own <name>.toml stays, for returnUntouched.
 */
async function restoreCache(bpCache: string, bpLayers: string): Promise<Map<string, Restored>> {
  const restored = new Map<string, Restored>();
  let files: string[];
  try {
    files = await fs.readdir(bpCache);
  } catch {
    return restored;
  }
  await Promise.all(
    files.map(async (f) => {
      if (!f.endsWith(".toml")) return;
      const name = f.slice(0, -5);
      const text = await fs.readFile(path.join(bpCache, f), "utf8");
      let t: TomlTable;
      try {
        t = parseToml(text);
      } catch {
        return; // unreadable cache entry: skip it
      }
      if (asTable(t.types).cache !== true || !(await isDir(path.join(bpCache, name)))) return;
      const metadata = asTable(t.metadata);
      const at = Date.now();
      await move(path.join(bpCache, name), path.join(bpLayers, name));
      await fs.writeFile(path.join(bpLayers, f), stringifyToml({ metadata }));
      restored.set(name, { metadata: JSON.stringify(metadata), ino: (await fs.stat(path.join(bpLayers, name))).ino, at });
    }),
  );
  return restored;
}

/**
 * Makes <cache>/<bp>/ hold exactly this build's cache = true layers, moving each
 * into it (so `l.dir` changes to its place in the cache, and a symlink takes its
 * place in the layers dir).
 */
async function saveCache(cacheDir: string, bpIds: string[], layers: LayerResult[]): Promise<void> {
  for (const bpId of bpIds) {
    const bpCache = path.join(cacheDir, escapeId(bpId));
    await fs.mkdir(bpCache, { recursive: true });
    const mine = layers.filter((l) => l.bpId === bpId && l.cache);
    const keep = new Set(mine.map((l) => l.name));
    for (const f of await fs.readdir(bpCache)) {
      const name = f.endsWith(".toml") ? f.slice(0, -5) : f;
      if (!keep.has(name)) await fs.rm(path.join(bpCache, f), { recursive: true, force: true });
    }
    for (const l of mine) {
      const dst = path.join(bpCache, l.name);
      await fs.rm(dst, { recursive: true, force: true });
      await move(l.dir, dst);
      await fs.symlink(dst, l.dir);
      await fs.copyFile(path.join(path.dirname(l.dir), `${l.name}.toml`), `${dst}.toml`);
      l.dir = dst;
    }
  }
}

/**
 * After a failed build, hands restored layers back to the cache unless the build
 * may have changed them: layers of buildpacks that never ran go back as they are;
 * those of buildpacks that ran go back only if nothing in them (and not their
 * [metadata]) changed since they were restored. Changed ones are dropped, so the
 * next build rebuilds them rather than reusing a half-updated layer.
 */
async function returnUntouched(cacheDir: string, layersDir: string, restoredAll: Map<string, Map<string, Restored>>, ran: Set<string>): Promise<void> {
  for (const [bpId, restored] of restoredAll) {
    for (const [name, r] of restored) {
      const dir = path.join(layersDir, escapeId(bpId), name);
      const dst = path.join(cacheDir, escapeId(bpId), name);
      const back = !ran.has(bpId) || (await unchangedSince(dir, r));
      if (back && !(await exists(dst))) await move(dir, dst).catch(() => fs.rm(`${dst}.toml`, { force: true }));
      else await fs.rm(`${dst}.toml`, { force: true });
    }
  }
}

/**
 * Whether a restored layer is as it was restored: same directory, same [metadata], and
 * no entry inside created, removed or written since (every ctime before the restore,
 * less 50 ms: file times come from the kernel's coarse clock, up to a tick behind; the
 * top directory's own ctime changed with the move, so its mtime is checked instead).
 * Anything written just before the restore counts as changed: dropping is the safe side.
 */
async function unchangedSince(dir: string, r: Restored): Promise<boolean> {
  const limit = r.at - 50;
  const st = await fs.lstat(dir).catch(() => null);
  if (st?.ino !== r.ino || st.mtimeMs >= limit) return false;
  try {
    if (JSON.stringify(asTable(parseToml(await fs.readFile(`${dir}.toml`, "utf8")).metadata)) !== r.metadata) return false;
  } catch {
    return false;
  }
  const walk = async (d: string): Promise<boolean> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if ((await fs.lstat(p)).ctimeMs >= limit) return false;
      if (e.isDirectory() && !(await walk(p))) return false;
    }
    return true;
  };
  return walk(dir).catch(() => false);
}

/** rename, or a copy and a delete where src and dst are on different filesystems. */
async function move(src: string, dst: string): Promise<void> {
  try {
    await fs.rename(src, dst);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
    await fs.cp(src, dst, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await fs.rm(src, { recursive: true, force: true });
  }
}

async function isDir(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => null))?.isDirectory() ?? false;
}
