import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { describeExit } from "./probe.ts";
import { isRunning, MAX_LINE, readExit, readSupervisor, RunWatch, supervise } from "./shim.ts";
import { removeTemps, tempDir } from "./testing.ts";

afterAll(removeTemps);

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("run watch", () => {
  it("splits output into lines across writes, with CRLF, multi-byte characters and an unterminated tail flushed at exit", async () => {
    const dir = await tempDir("berth-run-");
    const out = path.join(dir, "output");
    const lines: string[] = [];
    const w = new RunWatch(dir, 0, (l) => lines.push(l), undefined);
    const euro = Buffer.from("€");
    await fs.appendFile(out, "one\r\ntw");
    await fs.appendFile(out, Buffer.concat([Buffer.from("o "), euro.subarray(0, 1)]));
    await until("two lines", () => (lines.length >= 1 ? true : undefined));
    await fs.appendFile(out, Buffer.concat([euro.subarray(1), Buffer.from("\n\nlast")]));
    await until("three lines", () => (lines.length >= 3 ? true : undefined));
    // Whole lines only: "last" is not out yet, and the offset stops before it.
    expect(lines).toEqual(["one", "two €", ""]);
    expect(w.offset).toBe(Buffer.byteLength("one\r\ntwo €\n\n"));
    await fs.writeFile(path.join(dir, "exit"), "3\n");
    expect(await w.ended).toBe(3);
    expect(lines).toEqual(["one", "two €", "", "last"]);
  });

  it("lets a successor resume at the offset without repeating or dropping a line, and cuts runaway lines", async () => {
    const dir = await tempDir("berth-run-");
    const out = path.join(dir, "output");
    const first: string[] = [];
    const w1 = new RunWatch(dir, 0, (l) => first.push(l), undefined);
    await fs.appendFile(out, "a\nb\npartial");
    await until("a, b", () => (first.length === 2 ? true : undefined));
    w1.detach();
    await fs.appendFile(out, " line\n" + "x".repeat(MAX_LINE + 10) + "\n");
    const second: string[] = [];
    const w2 = new RunWatch(dir, w1.offset, (l) => second.push(l), undefined);
    await fs.writeFile(path.join(dir, "exit"), "0\n");
    expect(await w2.ended).toBe(0);
    expect(first).toEqual(["a", "b"]);
    expect(second).toEqual(["partial line", "x".repeat(MAX_LINE), "x".repeat(10)]);
  });

  it("supervises a command that outlives nothing: exit status and output in its dir, a vanished supervisor is noticed", async () => {
    const dir = await tempDir("berth-run-");
    const sup = await supervise(dir, ["/bin/sh", "-c", "echo out; echo err >&2; kill -TERM $$"], { cwd: dir });
    const lines: string[] = [];
    const w = new RunWatch(dir, 0, (l) => lines.push(l), sup);
    expect(await w.ended).toBe(143);
    expect(lines.sort()).toEqual(["err", "out"]);
    expect(describeExit({ code: 143, oom: false }).lastExit).toBe("killed by SIGTERM");
    expect(await readSupervisor(dir)).toEqual(sup);
    await until("supervisor gone", async () => ((await isRunning(sup)) ? undefined : true));

    const dir2 = await tempDir("berth-run-");
    const sup2 = await supervise(dir2, ["sleep", "30"], { cwd: dir2 });
    const w2 = new RunWatch(dir2, 0, () => undefined, sup2);
    expect(await isRunning(sup2)).toBe(true);
    // The supervisor dies before it can write an exit status (its child is left to us here).
    process.kill(sup2.pid, "SIGKILL");
    expect(await w2.ended).toBe("lost");
    expect(await readExit(dir2)).toBeUndefined();
    await fs.rm(dir2, { recursive: true, force: true });
    // Kill the orphaned sleep: its cwd is the (deleted) dir.
    for (const pid of await fs.readdir("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      const cwd = await fs.readlink(`/proc/${pid}/cwd`).catch(() => "");
      if (cwd.startsWith(dir2)) process.kill(Number(pid), "SIGKILL");
    }
  });

  it("describes exits the way Instance.lastExit and BootFailed say them", () => {
    expect(describeExit({ code: 1, oom: false })).toEqual({ lastExit: "exited 1", reason: "exited with code 1" });
    expect(describeExit({ code: 137, oom: true })).toEqual({ lastExit: "out of memory", reason: "killed: out of memory" });
    expect(describeExit({ code: 139, oom: false })).toEqual({ lastExit: "killed by SIGSEGV", reason: "killed by SIGSEGV" });
  });
});
