/** @berth/buildpacks: source extraction, a CNB-style lifecycle, the shipped buildpacks, the launch contract. */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { Order } from "./lifecycle.ts";

export { extractTarball, DEFAULT_EXTRACT_LIMITS, type ExtractLimits, type ExtractResult } from "./extract.ts";
export { build, detect, readBuildpack, readProcfile, applyEnv, escapeId, USER_ENV_RESERVED } from "./lifecycle.ts";
export type { BuildpackRef, Order, BuildpackInfo, LayerResult, ProcessType, EnvOp, BuildResult, LifecycleOptions, DetectResult } from "./lifecycle.ts";
export { spawnExec, bwrapExec, bwrapAvailable, trustEnv, TRUST_ENV_NAMES } from "./exec.ts";
export type { Exec, ExecRequest, ExecResult, ExecLimits, CpuStats, LimitName, Mount, SpawnExecOptions, BwrapExecOptions } from "./exec.ts";
export { launchEnv, launchCommand, layerPath, baseLaunchEnv, IMAGE_LAYOUT, type ImageLayout, type LaunchEnvOptions } from "./launch-env.ts";
export { parseToml, stringifyToml, type TomlTable, type TomlValue } from "./toml.ts";

/** Directory holding the buildpacks shipped with Berth (berth/nodejs, berth/python, berth/static, berth/procfile). */
export const SHIPPED_BUILDPACKS_DIR = fileURLToPath(new URL("../buildpacks/", import.meta.url));

export function shippedBuildpack(name: "nodejs" | "python" | "static" | "procfile"): string {
  return path.join(SHIPPED_BUILDPACKS_DIR, name);
}

/**
 * The default detection order, Heroku's auto-detection: Node.js, then Python,
 * then a static site (with the Node.js runtime to serve it), then a bare Procfile.
 */
export function defaultOrder(): Order {
  return [
    [{ dir: shippedBuildpack("nodejs") }],
    [{ dir: shippedBuildpack("python") }],
    [{ dir: shippedBuildpack("nodejs"), optional: true }, { dir: shippedBuildpack("static") }],
    [{ dir: shippedBuildpack("procfile") }],
  ];
}

/** Writes config vars as <platformDir>/env/<NAME> files; the lifecycle also sets them in buildpacks' environment (not for clear-env ones). */
export async function writePlatformEnv(platformDir: string, configVars: Record<string, string>): Promise<void> {
  const dir = path.join(platformDir, "env");
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  for (const [k, v] of Object.entries(configVars)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) continue;
    await fs.writeFile(path.join(dir, k), v, { mode: 0o640 });
  }
}
