import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Invalid, TooLarge, isBerthError, type Clock, type Logger } from "@berth/core";
import type { Db, EventBus } from "@berth/db";
import { build as runLifecycle, extractTarball, launchCommand, launchEnv, layerPath, writePlatformEnv, type Exec, type ExecResult, type LimitName, type Order } from "@berth/buildpacks";
import { OciLayout, buildImage, pushImage, tarDirectory, writeLayer, type LayerDescriptor, type RegistryCredentials } from "@berth/oci";
import { BuildLogWriter } from "./buildlog.ts";
import type { BuildQueue } from "./queue.ts";

/** The slice of the blob store the builder reads sources from. */
export interface SourceReader {
  get(key: string): Promise<Readable>;
}

/**
 * The config vars of an app as they are now (`apps.config_version`), decrypted.
 * The real one is `appConfigVars(db, keyRing)` from @berth/db.
 */
export interface AppConfigVars {
  current(appId: string): Promise<{ version: number; vars: Record<string, string> }>;
}

export interface BuilderDeps {
  db: Db;
  /** Build-time config vars: read when the build starts and handed to buildpacks as <platform>/env. */
  configVars: AppConfigVars;
  events: EventBus;
  queue: BuildQueue;
  sources: SourceReader;
  logger: Logger;
  clock: Clock;
  /** OCI image layout every image is written to (shared: identical layers are stored once). */
  layoutDir: string;
  /** Per-app buildpack caches and remembered layer descriptors. */
  cacheDir: string;
  /** Scratch space for builds in progress. */
  workDir: string;
  order: Order;
  exec: Exec;
  registry?: { host: string; insecure: boolean; credentials?: RegistryCredentials } | undefined;
  limits: { sourceBytes: number; sourceEntries: number; buildTimeoutMs: number; logLines: number; imageBytes: number };
  heartbeatMs: number;
}

/** What a succeeded build records about its image; the deployer picks the form its runtime needs. */
export interface BuiltImageRecord {
  kind: "layout";
  dir: string;
  digest: string;
  /** Environment every process starts with (before config vars and PORT). */
  launchEnv: Record<string, string>;
  /** Where the image was pushed, when a registry is configured. */
  registryReference?: string;
}

class Cancelled extends Error {}

/** Runs one claimed build to its end: source → buildpacks → image → recorded outcome. */
export async function runBuild(deps: BuilderDeps, buildId: string): Promise<"succeeded" | "failed"> {
  const { db, queue, logger } = deps;
  const b = await db.selectFrom("builds").selectAll().where("id", "=", buildId).executeTakeFirstOrThrow();
  const last = await db.selectFrom("build_logs").select((eb) => eb.fn.max("seq").as("seq")).where("build_id", "=", buildId).executeTakeFirst();
  const log = new BuildLogWriter(db, deps.events, buildId, last?.seq == null ? 0 : Number(last.seq) + 1, deps.limits.logLines);
  const abort = new AbortController();
  const beat = setInterval(() => {
    void queue.heartbeat(buildId).then(
      (r) => r.cancel && abort.abort(new Cancelled("Build cancelled.")),
      () => {},
    );
  }, deps.heartbeatMs);
  const deadline = setTimeout(() => abort.abort(new Error(`Build exceeded the ${Math.round(deps.limits.buildTimeoutMs / 1000)} s time limit.`)), deps.limits.buildTimeoutMs);
  await mkdir(deps.workDir, { recursive: true });
  const work = await mkdtemp(join(deps.workDir, `build-${buildId.slice(0, 8)}-`));
  const started = deps.clock.now();
  let status: "succeeded" | "failed" = "failed";
  try {
    const checkAbort = () => {
      if (abort.signal.aborted) throw abort.signal.reason instanceof Error ? abort.signal.reason : new Cancelled("Build cancelled.");
    };
    if (b.attempts > 1) log.line("-----> Retrying: the builder that started this build stopped.");
    // The config as the build starts, not as of the push: like Heroku, a build sees the config
    // vars set before it started. The release made from it takes the config current when it is made.
    const config = await deps.configVars.current(b.app_id);
    const platformDir = join(work, "platform");
    await writePlatformEnv(platformDir, config.vars);
    const appDir = join(work, "workspace");
    const source = await openSource(deps, b);
    const extracted = await extractTarball(source, appDir, { maxBytes: deps.limits.sourceBytes, maxEntries: deps.limits.sourceEntries });
    log.line(`-----> Source: ${extracted.entries} files, ${fmtBytes(extracted.bytes)}${b.source_version ? ` (${b.source_version.slice(0, 12)})` : ""}`);
    const count = Object.keys(config.vars).length;
    if (count > 0) log.line(`       Build-time config vars: ${count} (config version ${config.version})`);
    checkAbort();
    const appCache = join(deps.cacheDir, b.app_id);
    const usage = new ExecUsage((l) => log.line(l));
    const result = await runLifecycle({
      appDir,
      layersDir: join(work, "layers"),
      platformDir,
      cacheDir: join(appCache, "buildpacks"),
      order: deps.order,
      exec: observed(withAbort(deps.exec, abort.signal), usage),
      onLine: (l) => log.line(l),
      tmpDir: work,
      buildTimeoutMs: deps.limits.buildTimeoutMs,
    });
    checkAbort();
    const web = result.processes.find((p) => p.type === "web");
    log.line("-----> Compressing...");
    const layout = await OciLayout.open(deps.layoutDir);
    const remembered = await readRemembered(appCache);
    const layers: LayerDescriptor[] = [];
    let reusedLayers = 0;
    for (const l of result.layers.filter((x) => x.launch)) {
      const key = `${l.bpId}/${l.name}`;
      const known = remembered[key];
      if (l.reused && known && (await layout.hasBlob(known.digest))) {
        layers.push(known);
        reusedLayers++;
        continue;
      }
      const desc = await writeLayer(layout, tarDirectory(l.dir, { prefix: layerPath(l).slice(1) + "/" }));
      remembered[key] = desc;
      layers.push(desc);
    }
    layers.push(await writeLayer(layout, tarDirectory(appDir, { prefix: "workspace/" })));
    await writeFile(join(appCache, "layers.json"), JSON.stringify(remembered));
    const env = launchEnv(result);
    const built = await buildImage(layout, {
      layers,
      config: {
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        WorkingDir: "/workspace",
        User: "65534:65534",
        ...(web ? { Cmd: ["/bin/sh", "-c", launchCommand(result, "web")!] } : {}),
        Labels: { "dev.berth.app": b.app_id, "dev.berth.build": b.id },
      },
      tag: `build-${b.id}`,
    });
    const size = layers.reduce((n, l) => n + l.size, 0);
    log.line(`       Done: ${fmtBytes(size)} in ${layers.length} layers (${reusedLayers} reused from cache)`);
    if (size > deps.limits.imageBytes) throw new TooLarge(`The image is ${fmtBytes(size)}, over the ${fmtBytes(deps.limits.imageBytes)} limit.`);
    checkAbort();
    const record: BuiltImageRecord = { kind: "layout", dir: deps.layoutDir, digest: built.manifestDigest, launchEnv: env };
    if (deps.registry) {
      log.line("-----> Pushing image...");
      const pushed = await pushImage(layout, built.manifestDigest, {
        registry: deps.registry.host,
        repository: `berth/${b.app_id}`,
        tag: `build-${b.id}`,
        insecure: deps.registry.insecure,
        ...(deps.registry.credentials ? { credentials: deps.registry.credentials } : {}),
      });
      record.registryReference = pushed.reference;
      log.line(`       Uploaded ${pushed.uploadedBlobs.length} of ${pushed.uploadedBlobs.length + pushed.skippedBlobs.length + pushed.mountedBlobs.length} blobs, ${fmtBytes(pushed.uploadedBytes)}`);
    }
    log.line(`-----> Build succeeded in ${((deps.clock.now() - started) / 1000).toFixed(1)}s${usage.summary()}`);
    const processes = result.processes.map((p) => ({ type: p.type, command: launchCommand(result, p.type)! }));
    await log.flush();
    const ok = await queue.finish(buildId, { status: "succeeded", image: record, processes, buildpacks: result.buildpacks.map((bp) => ({ name: bp.id, url: bp.id, version: bp.version })) });
    status = ok ? "succeeded" : "failed";
  } catch (e) {
    const message = e instanceof Cancelled ? e.message : isBerthError(e) ? e.message : e instanceof Error && abort.signal.aborted ? e.message : "The build failed because of a platform error.";
    if (!(e instanceof Cancelled) && !isBerthError(e) && !abort.signal.aborted) logger.error("build failed", { build: buildId, err: e });
    log.line(` !     ${message}`);
    await log.flush().catch(() => {});
    await queue.finish(buildId, { status: "failed", failure: message });
  } finally {
    clearInterval(beat);
    clearTimeout(deadline);
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
  await deps.events.publish({ kind: "build.finished", buildId, appId: b.app_id, status });
  return status;
}

async function openSource(deps: BuilderDeps, b: { source_blob_key: string | null; source_url: string }): Promise<Readable> {
  if (b.source_blob_key) return deps.sources.get(b.source_blob_key);
  // An allowed external host (checked by the API when the build was created).
  const res = await fetch(b.source_url, { redirect: "error", signal: AbortSignal.timeout(60_000) });
  if (!res.ok || !res.body) throw new Invalid(`Could not download the source: HTTP ${res.status}.`);
  return Readable.fromWeb(res.body as import("node:stream/web").ReadableStream);
}

async function readRemembered(appCache: string): Promise<Record<string, LayerDescriptor>> {
  await mkdir(appCache, { recursive: true });
  try {
    return JSON.parse(await readFile(join(appCache, "layers.json"), "utf8")) as Record<string, LayerDescriptor>;
  } catch {
    return {};
  }
}

/** Ends the build as soon as it is cancelled or out of time: the buildpack's process group is killed. */
function withAbort(exec: Exec, signal: AbortSignal): Exec {
  return {
    remapsPaths: exec.remapsPaths,
    run(req) {
      if (signal.aborted) return Promise.reject(signal.reason);
      return new Promise((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        exec.run({ ...req, signal }).then(
          (r) => {
            signal.removeEventListener("abort", onAbort);
            resolve(r);
          },
          (e: unknown) => {
            signal.removeEventListener("abort", onAbort);
            reject(e);
          },
        );
      });
    },
  };
}

/**
 * What the Exec reported over one build: CPU time (and time held back by the CPU
 * limit) summed over every buildpack process, and, once per build, the limits this
 * builder could not enforce.
 */
class ExecUsage {
  readonly #line: (l: string) => void;
  #cpuMs = 0;
  #throttledMs = 0;
  #accounted = false;
  #warned = new Set<LimitName>();
  constructor(line: (l: string) => void) {
    this.#line = line;
  }
  add(r: ExecResult): void {
    if (r.cpu?.usageMs !== undefined) {
      this.#accounted = true;
      this.#cpuMs += r.cpu.usageMs;
    }
    this.#throttledMs += r.cpu?.throttledMs ?? 0;
    const fresh = (r.unenforced ?? []).filter((l) => !this.#warned.has(l));
    if (fresh.length === 0) return;
    for (const l of fresh) this.#warned.add(l);
    this.#line(` !     Not enforced on this builder: the build's ${fresh.join(", ")} limit${fresh.length > 1 ? "s" : ""} (no writable cgroup controller).`);
  }
  /** ", 1.2 s of CPU (0.3 s held back by the CPU limit)", or "" without accounting. */
  summary(): string {
    if (!this.#accounted) return "";
    const s = (ms: number) => (ms / 1000).toFixed(ms < 1000 ? 2 : 1);
    const held = this.#throttledMs >= 10 ? ` (${s(this.#throttledMs)} s held back by the CPU limit)` : "";
    return `, ${s(this.#cpuMs)} s of CPU${held}`;
  }
}

function observed(exec: Exec, usage: ExecUsage): Exec {
  return {
    remapsPaths: exec.remapsPaths,
    run: (req) =>
      exec.run(req).then((r) => {
        usage.add(r);
        return r;
      }),
  };
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
