import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/** Tests on the real single-node cluster (infra/cluster/up.sh); one file at a time: they share the node. */
export default defineConfig({
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    include: ["test/k8s/**/*.test.ts"],
    globalSetup: ["test/harness/global-setup.ts"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    fileParallelism: false,
    reporters: ["default"],
  },
});
