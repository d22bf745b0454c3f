/**
 * buildCache: what a rebuild with an unchanged lockfile costs.
 *
 * Bytes: a real registry (Debian's docker-registry, test/harness/registry.ts) gets the
 * first build's image, then the rebuild's, through the builder's own push path
 * (pushImage from @berth/oci, which uploads only blobs the registry lacks) on the OCI
 * layout the builder wrote. The harness runs its builder without a registry, so the
 * bench pushes after the fact; the bytes are the same the builder would send.
 *
 * Time: the "Installing dependencies" step of the Node.js buildpack, from the build's
 * log rows (written in batches every ~50 ms, so the resolution is ~50 ms).
 */
import { OciLayout, pushImage } from "@berth/oci";
import type { TestPlatform } from "../../test/harness/platform.ts";
import { startRegistry } from "../../test/harness/registry.ts";
import { log, type Teardown } from "../proc.ts";
import { round } from "../stats.ts";
import type { BenchApp } from "./push.ts";

interface ImageRecord {
  dir: string;
  digest: string;
}

export async function buildCacheSuite(p: TestPlatform, td: Teardown, app: BenchApp) {
  const rebuild = app.builds.warm[0];
  if (!rebuild) throw new Error("buildCache needs at least one warm push");
  const registry = await startRegistry();
  td.add("registry", () => registry.stop());
  const image = async (buildId: string) => (await p.db.selectFrom("builds").select("image").where("id", "=", buildId).executeTakeFirstOrThrow()).image as unknown as ImageRecord;
  const target = { registry: registry.host, repository: `berth/${app.id}`, insecure: true };

  const img1 = await image(app.builds.first);
  const pushed1 = await pushImage(await OciLayout.open(img1.dir), img1.digest, { ...target, tag: `build-${app.builds.first}` });
  const img2 = await image(rebuild);
  const pushed2 = await pushImage(await OciLayout.open(img2.dir), img2.digest, { ...target, tag: `build-${rebuild}` });
  const layout = await OciLayout.open(img2.dir);
  const manifest = JSON.parse((await layout.readBlob(img2.digest)).toString("utf8")) as { layers: { size: number }[]; config: { size: number } };
  const imageBytes = manifest.layers.reduce((n, l) => n + l.size, manifest.config.size);

  const cold = await stepMs(p, app.builds.first, /^-----> Installing dependencies/);
  const warm = await stepMs(p, rebuild, /^-----> Installing dependencies/);
  const coldNode = await stepMs(p, app.builds.first, /^-----> Installing binaries/);
  const warmNode = await stepMs(p, rebuild, /^-----> Installing binaries/);
  const rebuildLines = await logLines(p, rebuild);
  const reused = rebuildLines.some((l) => /Reusing node_modules/.test(l.line));
  const t0 = rebuildLines[0]?.created_at.getTime() ?? 0;
  log(`buildCache: rebuild uploaded ${pushed2.uploadedBytes} B of a ${imageBytes} B image (first build ${pushed1.uploadedBytes} B); dependencies ${cold} ms cold, ${warm} ms warm`);
  return {
    uploadedBytes: pushed2.uploadedBytes,
    uploadedBlobs: pushed2.uploadedBlobs.length,
    skippedBlobs: pushed2.skippedBlobs.length,
    firstUploadedBytes: pushed1.uploadedBytes,
    imageBytes,
    dependencyInstallMs: warm,
    dependencyInstallColdMs: cold,
    runtimeInstallMs: warmNode,
    runtimeInstallColdMs: coldNode,
    nodeModulesReused: reused,
    /** The rebuild's log, each line with its ms since the first (batch resolution ~50 ms). */
    rebuildLog: rebuildLines.slice(0, 80).map((l) => `+${l.created_at.getTime() - t0} ${l.line}`),
  };
}

async function logLines(p: TestPlatform, buildId: string) {
  return p.db.selectFrom("build_logs").select(["seq", "line", "created_at"]).where("build_id", "=", buildId).orderBy("seq").execute();
}

/** Time from a step's header line to the next header line. */
async function stepMs(p: TestPlatform, buildId: string, header: RegExp): Promise<number> {
  const lines = await logLines(p, buildId);
  const i = lines.findIndex((l) => header.test(l.line));
  if (i < 0) throw new Error(`build ${buildId}: no log line matches ${header}`);
  const next = lines.slice(i + 1).find((l) => l.line.startsWith("-----> "));
  if (!next) throw new Error(`build ${buildId}: no step after ${header}`);
  return round(next.created_at.getTime() - lines[i]!.created_at.getTime());
}
