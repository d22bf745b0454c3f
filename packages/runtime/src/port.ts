/**
 * The runtime port: what the control plane and the router need from "where
 * instances run". Two implementations live beside this file: local/ (runc
 * containers on this machine, the embedded default) and kubernetes/.
 *
 * Invariants every implementation keeps (checked by the shared contract tests):
 * - apply() is start-first: the new release's instances must be ready (listening on
 *   PORT, and answering the health-check path when one is set) before apply()
 *   resolves; only then are the previous release's instances told to stop
 *   (SIGTERM, grace period, SIGKILL). If the new instances do not become ready
 *   within bootTimeoutMs, apply() rejects with BootFailed and the old instances
 *   keep running untouched.
 * - Instances are addressed per app by an opaque app id; the team only decides
 *   isolation (namespace, network).
 */

/** Memory, process and CPU limits of one instance, from its dyno size. */
export interface DynoSize {
  name: string;
  memoryMb: number;
  pids: number;
  /** Relative CPU weight; 1024 = one full share. */
  cpuShares: number;
}

export const DYNO_SIZES: Record<string, DynoSize> = {
  eco: { name: "eco", memoryMb: 256, pids: 128, cpuShares: 256 },
  basic: { name: "basic", memoryMb: 512, pids: 256, cpuShares: 512 },
  "standard-1x": { name: "standard-1x", memoryMb: 512, pids: 256, cpuShares: 1024 },
  "standard-2x": { name: "standard-2x", memoryMb: 1024, pids: 512, cpuShares: 2048 },
  "performance-m": { name: "performance-m", memoryMb: 2560, pids: 1024, cpuShares: 4096 },
};

/** Where the image's filesystem comes from. */
export type ImageRef =
  | { kind: "layout"; /** OCI image layout directory on local disk */ dir: string; digest: string }
  | { kind: "registry"; /** e.g. 127.0.0.1:5000/team/app@sha256:... */ reference: string; digest: string }
  | { kind: "dir"; /** an already-unpacked root of the app (tests, fallback) */ dir: string };

export interface ProcessSpec {
  type: string;
  command: string;
  quantity: number;
  size: DynoSize;
}

export interface DesiredApp {
  teamId: string;
  appId: string;
  appName: string;
  release: number;
  image: ImageRef;
  env: Record<string, string>;
  processes: ProcessSpec[];
  /** Optional HTTP path that must answer 2xx/3xx before a web instance counts as ready. */
  healthCheckPath?: string;
  bootTimeoutMs: number;
  /** Time between SIGTERM and SIGKILL when stopping instances. */
  graceMs: number;
}

export type InstanceState = "starting" | "up" | "crashed" | "frozen" | "stopping" | "down";

export interface Instance {
  /** Heroku-style dyno name: web.1, worker.2 */
  name: string;
  appId: string;
  type: string;
  release: number;
  state: InstanceState;
  /** Where the router reaches a web instance; absent until it listens. */
  address?: { host: string; port: number };
  startedAt: Date;
  restarts: number;
  /** Why the last run ended, e.g. "exited 1", "out of memory", "failed to bind PORT". */
  lastExit?: string;
  size: string;
}

export interface LogLine {
  appId: string;
  at: Date;
  /** "app" for the app's own output, "berth" for platform events, "router" for access lines */
  source: string;
  /** dyno name (web.1), "api", "router" */
  dyno: string;
  text: string;
}

export type RuntimeEvent =
  | { kind: "log"; line: LogLine }
  | { kind: "instance"; instance: Instance };

export class BootFailed extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`release failed to boot: ${reason}`);
    this.name = "BootFailed";
    this.reason = reason;
  }
}

export interface Runtime {
  readonly name: string;
  /** Whether idle apps can be frozen (tier 1 of scale-to-zero); Kubernetes cannot. */
  readonly canFreeze: boolean;
  /** Make the app run `desired`, start-first. See the file comment for the invariants. */
  apply(desired: DesiredApp): Promise<void>;
  /** Change only the quantity of one process type of the current release. */
  scale(appId: string, type: string, quantity: number): Promise<void>;
  /** Instances of one app, or of all apps. */
  list(appId?: string): Promise<Instance[]>;
  /** Restart one instance (by dyno name or type) or all of the app's. */
  restart(appId: string, which?: string): Promise<void>;
  /** Run a one-off process (the Procfile's `release:`) to completion. */
  runOnce(desired: DesiredApp, command: string, opts: { timeoutMs: number }): Promise<{ exitCode: number; output: string }>;
  freeze(appId: string): Promise<void>;
  thaw(appId: string): Promise<void>;
  /** Stop and forget everything of the app. */
  remove(appId: string): Promise<void>;
  subscribe(listener: (e: RuntimeEvent) => void): () => void;
  /** Stop watching and release resources; leaves instances running where the runtime allows it. */
  close(): Promise<void>;
}
