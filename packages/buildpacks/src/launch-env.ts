/**
 * The launch contract between a build and the runtime: where the app and the
 * layers sit in the image, and the environment a process must start with.
 * README.md ("Image layout") is the prose version of this file.
 */
import * as path from "node:path";
import { applyEnv, escapeId, type BuildResult, type LayerResult } from "./lifecycle.ts";

/** Where things sit in the image's filesystem. */
export interface ImageLayout {
  /** The app's source tree, also the working directory of every process. */
  app: string;
  /** Parent of <escaped bp id>/<layer>/ for every launch layer. */
  layers: string;
}

export const IMAGE_LAYOUT: ImageLayout = { app: "/workspace", layers: "/layers" };

/** The environment the runtime starts from, before config vars and layer changes. */
export function baseLaunchEnv(layout: ImageLayout = IMAGE_LAYOUT): Record<string, string> {
  return { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: layout.app, LANG: "C.UTF-8", CNB_APP_DIR: layout.app, CNB_LAYERS_DIR: layout.layers };
}

export interface LaunchEnvOptions {
  /** Default IMAGE_LAYOUT; pass the host dirs to run straight from the build's directories. */
  layout?: ImageLayout;
  /** The app's config vars; layer `.default` values yield to them, PATH-like prepends add to them. */
  configVars?: Record<string, string>;
  /** Set after everything else, e.g. PORT and DYNO. */
  runtime?: Record<string, string>;
}

/**
 * The environment a process of this build starts with: base env, then config
 * vars, then every launch layer's changes in build order (bin/ → PATH, lib/ →
 * LD_LIBRARY_PATH, env/ and env.launch/ files), then `runtime`. Host paths of the
 * build are mapped to `layout`.
 */
export function launchEnv(result: BuildResult, o: LaunchEnvOptions = {}): Record<string, string> {
  const layout = o.layout ?? IMAGE_LAYOUT;
  const map = pathMapper(result, layout);
  const ops = result.env.map((op) => ({ ...op, value: map(op.value) }));
  return { ...applyEnv({ ...baseLaunchEnv(layout), ...o.configVars }, ops), ...o.runtime };
}

/** Where a launch layer lands in the image (or in `layout`). */
export function layerPath(layer: LayerResult, layout: ImageLayout = IMAGE_LAYOUT): string {
  return path.posix.join(layout.layers, escapeId(layer.bpId), layer.name);
}

/** A process's command with build-host paths mapped to `layout`. */
export function launchCommand(result: BuildResult, type: string, layout: ImageLayout = IMAGE_LAYOUT): string | undefined {
  const p = result.processes.find((x) => x.type === type);
  return p === undefined ? undefined : pathMapper(result, layout)(p.command);
}

function pathMapper(result: BuildResult, layout: ImageLayout): (s: string) => string {
  const pairs: [string, string][] = [
    [result.layersDir, layout.layers],
    [result.appDir, layout.app],
  ];
  return (s) => {
    let out = s;
    for (const [from, to] of pairs) if (from !== to) out = out.split(from).join(to);
    return out;
  };
}
