/**
 * The fallback when runc is unavailable: each instance is a plain child process
 * (`/bin/sh -c`) in its own process group, with the same env, PORT and output
 * capture, but no isolation: it runs as this process's user, sees the host's
 * filesystem and processes, and has no memory or pids limit (so no OOM report).
 * Freezing uses SIGSTOP/SIGCONT on the process group.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import { Unavailable } from "@berth/core";
import type { Driver, Exit, LaunchSpec, Launched, OutputSink } from "./driver.ts";
import { lineSplitter } from "./lines.ts";

export function createProcessDriver(o: { nodeBinary?: string }): Driver {
  const live = new Map<ChildProcess, Promise<Exit>>();
  const nodeBin = o.nodeBinary ? path.dirname(o.nodeBinary) : undefined;

  const group = (child: ChildProcess, sig: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, sig);
    } catch {
      // ESRCH: the group is gone already.
    }
  };

  return {
    kind: "process",
    isolated: false,
    paths: (image) => ({ app: image.appDir, layers: image.layersDir, nodeBin }),

    async launch(spec: LaunchSpec, out: OutputSink): Promise<Launched> {
      const child = spawn("/bin/sh", ["-c", spec.command], {
        cwd: spec.image.appDir,
        env: spec.env,
        detached: true, // own process group, so signals reach the app's children too
        stdio: ["ignore", "pipe", "pipe"],
      });
      const so = lineSplitter((l) => out("stdout", l));
      const se = lineSplitter((l) => out("stderr", l));
      child.stdout!.on("data", (c: Buffer) => so.push(c));
      child.stderr!.on("data", (c: Buffer) => se.push(c));
      let ended = false;
      const exited = new Promise<Exit>((resolve) => {
        child.once("close", (code, signal) => {
          ended = true;
          so.end();
          se.end();
          // Whatever the shell left behind in its group goes with it.
          group(child, "SIGKILL");
          live.delete(child);
          const n = signal ? ((os.constants.signals as Record<string, number>)[signal] ?? 0) : 0;
          resolve({ code: code ?? 128 + n, oom: false });
        });
      });
      try {
        await once(child, "spawn");
      } catch (e) {
        throw new Unavailable(`could not start /bin/sh for ${spec.id}: ${(e as Error).message}`);
      }
      live.set(child, exited);
      return {
        exited,
        async signal(sig) {
          if (ended) return;
          group(child, "SIGCONT");
          group(child, sig);
        },
        async pause() {
          group(child, "SIGSTOP");
        },
        async resume() {
          group(child, "SIGCONT");
        },
      };
    },

    async reapAll() {
      const all = [...live];
      for (const [child] of all) {
        group(child, "SIGCONT");
        group(child, "SIGKILL");
      }
      await Promise.all(all.map(([, exited]) => exited));
    },
  };
}
