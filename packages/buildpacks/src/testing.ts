/**
 * Real builds for the buildpack tests: an app written to disk, built with the lifecycle
 * and the shipped buildpacks, then run from its layers like the runtime would and asked
 * for a response over HTTP on 127.0.0.1. Nothing here is faked.
 */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { build, type BuildResult } from "./lifecycle.ts";
import { launchEnv, launchCommand, layerPath, type ImageLayout } from "./launch-env.ts";
import { spawnExec, trustEnv, type Exec } from "./exec.ts";
import { defaultOrder, writePlatformEnv } from "./index.ts";

export const hostExec: Exec = spawnExec({ passEnv: trustEnv(process.env) });

/** Writes `files` (relative path → content) into `dir`, which is created. */
export async function writeApp(dir: string, files: Record<string, string>): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  for (const [f, body] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, f)), { recursive: true });
    await fs.writeFile(path.join(dir, f), body);
  }
  return dir;
}

export interface BuildOptions {
  cacheDir: string;
  configVars?: Record<string, string>;
  exec?: Exec;
}
export interface Built {
  result: BuildResult;
  lines: string[];
  ms: number;
}

async function attempt(appDir: string, o: BuildOptions): Promise<{ result?: BuildResult; error?: unknown; lines: string[]; ms: number }> {
  // The app's siblings: a fresh layers dir each build (the cache restores into it) and the platform dir.
  const base = path.dirname(appDir);
  await fs.rm(path.join(base, "layers"), { recursive: true, force: true });
  await writePlatformEnv(path.join(base, "platform"), o.configVars ?? {});
  const lines: string[] = [];
  const started = performance.now();
  try {
    const result = await build({ appDir, layersDir: path.join(base, "layers"), platformDir: path.join(base, "platform"), cacheDir: o.cacheDir, order: defaultOrder(), exec: o.exec ?? hostExec, onLine: (l) => lines.push(l) });
    return { result, lines, ms: Math.round(performance.now() - started) };
  } catch (error) {
    return { error, lines, ms: Math.round(performance.now() - started) };
  }
}

/** Builds the app in `appDir`; on failure prints the build output and throws. */
export async function buildApp(appDir: string, o: BuildOptions): Promise<Built> {
  const { result, error, lines, ms } = await attempt(appDir, o);
  if (result === undefined) {
    console.log(lines.join("\n"));
    throw error;
  }
  return { result, lines, ms };
}

/** Builds an app that must fail; returns the error and the output. */
export async function failedBuild(appDir: string, o: BuildOptions): Promise<{ error: unknown; lines: string[] }> {
  const { result, error, lines } = await attempt(appDir, o);
  if (result !== undefined) throw new Error(`the build succeeded:\n${lines.join("\n")}`);
  return { error, lines };
}

/**
 * Copies what an image would hold into `root`: the app at `root/workspace` and each
 * launch layer at `root/layers/<bp id with / → _>/<name>`, symlinks as symlinks, and
 * nothing else (no build-only or cache-only layer). Returns the layout to run it with.
 */
export async function exportImage(result: BuildResult, root: string): Promise<ImageLayout> {
  const layout = { app: path.join(root, "workspace"), layers: path.join(root, "layers") };
  await fs.rm(root, { recursive: true, force: true });
  await fs.mkdir(root, { recursive: true });
  // Hard-linked files (the node layer alone is ~120 MB): what is checked is the tree's shape.
  const copy = (from: string, to: string) => promisify(execFile)("cp", ["-a", "--link", "--no-target-directory", from, to]);
  await copy(result.appDir, layout.app);
  for (const l of result.layers.filter((l) => l.launch)) {
    const dst = layerPath(l, layout);
    await fs.mkdir(path.dirname(dst), { recursive: true });
    await copy(l.dir, dst);
  }
  return layout;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/**
 * Starts the web process and returns the response to `urlPath`. By default from the
 * build's own directories; pass the layout exportImage() returned to run the image copy.
 */
export async function runWeb(result: BuildResult, urlPath = "/", layout: ImageLayout = { app: result.appDir, layers: result.layersDir }): Promise<{ status: number; body: string; type: string | null }> {
  const port = await freePort();
  const env = launchEnv(result, { layout, runtime: { PORT: String(port), HOST: "127.0.0.1" } });
  const command = launchCommand(result, "web", layout);
  if (command === undefined) throw new Error("the build has no web process");
  const child = spawn("/bin/sh", ["-c", command], { cwd: layout.app, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr.on("data", (c: Buffer) => (output += c.toString()));
  try {
    // Polls until the process listens: it says nothing when it is ready.
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${urlPath}`);
        return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
      } catch (e) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`web process did not answer: ${(e as Error).message}\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }
}
