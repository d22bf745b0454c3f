/**
 * The seam between the local runtime's bookkeeping (index.ts) and the thing that
 * actually runs a process: a runc container (runc.ts) or a plain child process
 * (process.ts). Only what index.ts calls.
 */
import type { DynoSize } from "../port.ts";
import type { PreparedImage } from "./image.ts";

export interface LaunchSpec {
  /** Unique across the machine (it names the runc container and its cgroups). */
  id: string;
  /** Dyno name, used as the container's hostname. */
  dyno: string;
  /** Run through `/bin/sh -c`. */
  command: string;
  env: Record<string, string>;
  image: PreparedImage;
  size: DynoSize;
}

/** How a run ended. `code` follows the shell: 128 + n when killed by signal n. */
export interface Exit {
  code: number;
  /** The kernel's OOM killer killed a process of the instance (memory cgroup). */
  oom: boolean;
}

export interface Launched {
  /** Resolves once the process has ended, its output is drained and its container is deleted. */
  readonly exited: Promise<Exit>;
  /** Signals every process of the instance; a no-op once it has exited. */
  signal(sig: "SIGTERM" | "SIGKILL"): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
}

/** Where the instance sees the image and the platform's Node. */
export interface PathView {
  app: string;
  layers?: string;
  nodeBin?: string;
}

export type OutputSink = (stream: "stdout" | "stderr", line: string) => void;

export interface Driver {
  readonly kind: "runc" | "process";
  /** uid 65534, read-only system dirs, own pid namespace, memory and pids limits. */
  readonly isolated: boolean;
  paths(image: PreparedImage): PathView;
  /** Resolves once the process runs; rejects (platform fault) when it could not be started. */
  launch(spec: LaunchSpec, out: OutputSink): Promise<Launched>;
  /** Kills everything this driver started or finds in its state (orphans of a previous run). */
  reapAll(): Promise<void>;
}
