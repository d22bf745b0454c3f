/** The bench's side of router-child.ts. */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { spawnOwned, stopChild, type Teardown } from "./proc.ts";

export interface RouterProc {
  pid: number;
  start(appPort?: number, host?: string): Promise<{ port: number }>;
  fill(n: number): Promise<{ size: number }>;
  memory(): Promise<{ rss: number; heap: number; gc: boolean }>;
  stop(): Promise<void>;
}

export function spawnRouter(td: Teardown): RouterProc {
  const entry = fileURLToPath(new URL("./router-child.ts", import.meta.url));
  const child: ChildProcess = spawnOwned(td, "router child", process.execPath, ["--expose-gc", entry], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let next = 0;
  const pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  child.on("message", (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.ok) p?.resolve(m.result);
    else p?.reject(new Error(`router child: ${m.error}`));
  });
  child.on("exit", (code, signal) => {
    for (const p of pending.values()) p.reject(new Error(`router child exited (${code ?? signal})`));
    pending.clear();
  });
  const call = (msg: Record<string, unknown>, timeoutMs = 60_000): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`router child: ${String(msg.cmd)} timed out`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.send({ ...msg, id });
    });
  return {
    pid: child.pid!,
    start: (appPort, host) => call({ cmd: "start", appPort, host }),
    fill: (n) => call({ cmd: "fill", n }),
    memory: () => call({ cmd: "memory" }),
    stop: () => stopChild(child, 3000),
  };
}
