/**
 * The seam between the local runtime's bookkeeping (index.ts) and the thing that
 * actually runs a process: a runc container (runc.ts) or a plain process group
 * (process.ts), each under a supervisor that outlives this process (shim.ts). Only
 * what index.ts calls.
 */
import type { DynoSize } from "../port.ts";
import type { PreparedImage } from "./image.ts";

export interface LaunchSpec {
  /** Unique across the machine (it names the runc container, its cgroups and its run dir). */
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
  /** Its supervisor vanished without recording an exit status (killed, or the machine rebooted). */
  lost?: boolean;
}

export interface Launched {
  /** Names the run for adopt() by a later runtime. */
  readonly id: string;
  /** Resolves once the process has ended, its output is drained and its container is deleted. Never, once detached. */
  readonly exited: Promise<Exit>;
  /** Signals every process of the instance; a no-op once it has exited. */
  signal(sig: "SIGTERM" | "SIGKILL"): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Bytes of output handed out as lines so far: where a successor resumes. */
  logOffset(): number;
  /** Stops watching; the process runs on for a later runtime to adopt. */
  detach(): void;
}

/** Where the instance sees the image and the platform's Node. */
export interface PathView {
  app: string;
  layers?: string;
  nodeBin?: string;
}

export type OutputSink = (line: string) => void;

export interface Driver {
  readonly kind: "runc" | "process";
  /** uid 65534, read-only system dirs, own pid namespace, memory and pids limits. */
  readonly isolated: boolean;
  paths(image: PreparedImage): PathView;
  /** Resolves once the process runs; rejects (platform fault) when it could not be started. */
  launch(spec: LaunchSpec, out: OutputSink): Promise<Launched>;
  /**
   * Watches a run that an earlier runtime launched, its output from `logOffset` on. Undefined
   * when nothing of it is left; a run that ended meanwhile is returned with `exited` resolving.
   */
  adopt(id: string, logOffset: number, out: OutputSink): Promise<{ run: Launched; paused: boolean } | undefined>;
  /** Kills and deletes every run in this driver's state that is not in `keep` (all when empty). */
  reap(keep: ReadonlySet<string>): Promise<void>;
}
