import type { BerthConfig } from "@berth/core";
import type { ExecLimits } from "@berth/buildpacks";

/**
 * The resource limits of every buildpack process, from BERTH_BUILD_MEMORY_MB,
 * BERTH_BUILD_CPUS and BERTH_BUILD_PIDS. Each run of bin/detect or bin/build gets
 * its own cgroup with them (one buildpack at a time runs, so they are the build's).
 */
export function buildLimits(c: Pick<BerthConfig, "BERTH_BUILD_MEMORY_MB" | "BERTH_BUILD_CPUS" | "BERTH_BUILD_PIDS">): Required<Pick<ExecLimits, "memoryBytes" | "cpus" | "pids">> {
  return { memoryBytes: c.BERTH_BUILD_MEMORY_MB * 1024 * 1024, cpus: c.BERTH_BUILD_CPUS, pids: c.BERTH_BUILD_PIDS };
}
