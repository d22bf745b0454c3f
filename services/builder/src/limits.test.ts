/**
 * The build limits from config, enforced on real processes in the sandbox the
 * builder uses (skipped where bubblewrap or a writable cgroup is missing). The
 * CPU limit's mechanics are tested in packages/buildpacks (lifecycle.test.ts).
 */
import { expect, test } from "vitest";
import { loadConfig } from "@berth/core";
import { bwrapAvailable, bwrapExec, type ExecRequest } from "@berth/buildpacks";
import { buildLimits } from "./limits.ts";

const available = await bwrapAvailable();
const config = loadConfig({ BERTH_BUILD_MEMORY_MB: "96", BERTH_BUILD_PIDS: "32", BERTH_BUILD_CPUS: "0.5" }, "/tmp");

function run(script: string, mounts: ExecRequest["mounts"] = []) {
  const lines: string[] = [];
  return bwrapExec(buildLimits(config))
    .run({ argv: ["/bin/sh", "-c", script], cwd: "/", env: { PATH: "/cnb/tools:/usr/bin:/bin" }, mounts, timeoutMs: 30_000, onLine: (l) => lines.push(l) })
    .then((res) => ({ ...res, lines }));
}

test("config keys become the sandbox's limits, with embedded defaults", () => {
  expect(buildLimits(config)).toEqual({ memoryBytes: 96 * 1024 * 1024, pids: 32, cpus: 0.5 });
  expect(buildLimits(loadConfig({}, "/tmp"))).toEqual({ memoryBytes: 2048 * 1024 * 1024, pids: 1024, cpus: 1 });
  expect(() => loadConfig({ BERTH_BUILD_CPUS: "none" }, "/tmp")).toThrow(/BERTH_BUILD_CPUS="none"/);
});

test.skipIf(!available)("BERTH_BUILD_MEMORY_MB: a build allocating more is killed, and says so with the configured limit", async () => {
  // 256 MB touched by node (the lifecycle's own binary, as buildpacks get it), over the 96 MB limit.
  const res = await run(`node -e 'const b = Buffer.alloc(256 * 1024 * 1024, 1); console.log("allocated", b.length)'`, [
    { source: process.execPath, target: "/cnb/tools/node", writable: false },
  ]);
  expect(res.unenforced).toBeUndefined();
  expect(res.code).not.toBe(0);
  expect(res.lines).not.toContain(`allocated ${256 * 1024 * 1024}`);
  expect(res.lines).toContain("Build ran out of memory (limit 96 MB).");
});

test.skipIf(!available)("BERTH_BUILD_PIDS: a build cannot start more processes than the limit", async () => {
  // 64 long-lived children against a limit of 32: the shell's fork fails part way.
  const res = await run(`i=0; while [ $i -lt 64 ]; do sleep 600 & i=$((i + 1)); done; echo "started all"`);
  expect(res.unenforced).toBeUndefined();
  expect(res.lines).not.toContain("started all");
  expect(res.lines.join("\n")).toMatch(/[Cc]annot fork|Resource temporarily unavailable/);
  // Within the limit the same script runs.
  const few = await run(`i=0; while [ $i -lt 8 ]; do sleep 600 & i=$((i + 1)); done; echo "started all"; kill $(jobs -p)`);
  expect(few.lines).toContain("started all");
});
