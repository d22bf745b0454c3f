/**
 * A build end to end on real components: Postgres (config vars encrypted as the api
 * stores them), the local blob store, the lifecycle in the sandbox production uses
 * (bubblewrap where this machine has it) with the limits from config, and the OCI
 * layout the image is written to.
 */
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, test } from "vitest";
import { loadConfig, newKeySpec, parseKeyRing, silentLogger, systemClock, type KeyRing } from "@berth/core";
import { appConfigVars, pgEventBus, type EventBus } from "@berth/db";
import { createLocalBlobStore } from "@berth/blobstore";
import { bwrapAvailable, bwrapExec, spawnExec } from "@berth/buildpacks";
import { OciLayout } from "@berth/oci";
import { freshDatabase } from "../../../test/harness/db.ts";
import { BuildQueue } from "./queue.ts";
import { runBuild, type BuilderDeps, type BuiltImageRecord } from "./worker.ts";
import { buildLimits } from "./limits.ts";

let h: Awaited<ReturnType<typeof freshDatabase>>;
let events: EventBus;
let dir: string;
let ring: KeyRing;
let ids: { user: string; team: string; app: string };

beforeAll(async () => {
  h = await freshDatabase();
  events = await pgEventBus(h.url, silentLogger);
  dir = await mkdtemp(join(tmpdir(), "berth-builder-"));
  ring = parseKeyRing(newKeySpec("k1"));
  const user = (await h.db.insertInto("users").values({ email: "b@example.test", password_hash: "x" }).returning("id").executeTakeFirstOrThrow()).id;
  const team = (await h.db.insertInto("teams").values({ name: "builders" }).returning("id").executeTakeFirstOrThrow()).id;
  const app = (await h.db.insertInto("apps").values({ name: "cfg-app", team_id: team, owner_id: user }).returning("id").executeTakeFirstOrThrow()).id;
  ids = { user, team, app };
});
afterAll(async () => {
  await events?.close();
  await h?.drop();
  await rm(dir, { recursive: true, force: true });
});

/** A config version as the api's ConfigStore writes it: one AES-256-GCM snapshot bound to the app, made current. */
async function setConfig(version: number, vars: Record<string, string>) {
  const enc = ring.encrypt(Buffer.from(JSON.stringify(vars)), ids.app);
  await h.db.insertInto("config_versions").values({ app_id: ids.app, version, key_id: enc.keyId, nonce: enc.nonce, ciphertext: enc.ciphertext }).execute();
  await h.db.updateTable("apps").set({ config_version: version }).where("id", "=", ids.app).execute();
  return enc.ciphertext;
}

/** A buildpack that prints one config var, as a user's buildpack might, and declares a web process. */
async function echoBuildpack(): Promise<string> {
  const bp = join(dir, "bp-echo");
  await mkdir(join(bp, "bin"), { recursive: true });
  await writeFile(join(bp, "buildpack.toml"), `api = "0.10"\n[buildpack]\nid = "test/echo"\nversion = "0.0.1"\nname = "Echo"\n`);
  await writeFile(join(bp, "bin", "detect"), `#!/bin/sh\n[ -f marker.txt ] || exit 100\n`, { mode: 0o755 });
  await writeFile(
    join(bp, "bin", "build"),
    `#!/bin/sh
set -e
echo "the buildpack sees SECRET_TOKEN=$SECRET_TOKEN"
mkdir -p "$CNB_LAYERS_DIR/run"
printf '[types]\\nlaunch = true\\n' > "$CNB_LAYERS_DIR/run.toml"
printf '[[processes]]\\ntype = "web"\\ncommand = "cat marker.txt"\\ndefault = true\\n' > "$CNB_LAYERS_DIR/launch.toml"
`,
    { mode: 0o755 },
  );
  return bp;
}

test("the app's current config vars reach the buildpacks, and neither the image nor the log carries them", async () => {
  const secret = `tok-${randomBytes(8).toString("hex")}`;
  await setConfig(1, { SECRET_TOKEN: "an-older-value" });
  const stored = await setConfig(2, { SECRET_TOKEN: secret, GREETING: "hi" });
  expect(stored.includes(Buffer.from(secret))).toBe(false);

  const src = join(dir, "src");
  await mkdir(src, { recursive: true });
  await writeFile(join(src, "marker.txt"), "hello\n");
  const tgz = join(dir, "src.tgz");
  await promisify(execFile)("tar", ["-czf", tgz, "-C", src, "."]);
  const blobs = createLocalBlobStore({ root: join(dir, "blobs") });
  await blobs.put("sources/cfg.tgz", createReadStream(tgz));
  const build = (
    await h.db
      .insertInto("builds")
      .values({ app_id: ids.app, team_id: ids.team, user_id: ids.user, source_url: "blob", source_blob_key: "sources/cfg.tgz" })
      .returning("id")
      .executeTakeFirstOrThrow()
  ).id;

  const queue = new BuildQueue(h.db, systemClock, "worker-test");
  expect((await queue.claim())?.id).toBe(build);
  const limits = buildLimits(loadConfig({}, dir));
  const deps: BuilderDeps = {
    db: h.db,
    configVars: appConfigVars(h.db, ring),
    events,
    queue,
    sources: blobs,
    logger: silentLogger,
    clock: systemClock,
    layoutDir: join(dir, "images"),
    cacheDir: join(dir, "cache"),
    workDir: join(dir, "builds"),
    order: [[{ dir: await echoBuildpack() }]],
    exec: (await bwrapAvailable()) ? bwrapExec(limits) : spawnExec(limits),
    limits: { sourceBytes: 10 * 1024 * 1024, sourceEntries: 1000, buildTimeoutMs: 60_000, logLines: 1000, imageBytes: 100 * 1024 * 1024 },
    heartbeatMs: 1000,
  };
  const status = await runBuild(deps, build);
  const lines = (await h.db.selectFrom("build_logs").select("line").where("build_id", "=", build).orderBy("seq").execute()).map((r) => r.line);
  expect(status, lines.join("\n")).toBe("succeeded");

  // Seen by the buildpack, printed only by it.
  expect(lines).toContain("       Build-time config vars: 2 (config version 2)");
  expect(lines.filter((l) => l.includes(secret))).toEqual([`       the buildpack sees SECRET_TOKEN=${secret}`]);
  expect(lines.some((l) => l.includes("an-older-value"))).toBe(false);
  // The limits from config either held (CPU time accounted) or the log says which did not.
  const unenforced = lines.filter((l) => l.startsWith(" !     Not enforced on this builder"));
  const succeeded = lines.find((l) => l.startsWith("-----> Build succeeded"))!;
  if (unenforced.length === 0) expect(succeeded).toMatch(/^-----> Build succeeded in [\d.]+s, [\d.]+ s of CPU/);
  else expect(unenforced).toHaveLength(1);

  // Not in the image: its config Env is the launch env of the layers, without config vars.
  const row = await h.db.selectFrom("builds").select("image").where("id", "=", build).executeTakeFirstOrThrow();
  const image = row.image as BuiltImageRecord;
  const layout = await OciLayout.open(image.dir);
  const manifest = JSON.parse((await layout.readBlob(image.digest)).toString()) as { config: { digest: string } };
  const config = JSON.parse((await layout.readBlob(manifest.config.digest)).toString()) as { config: { Env: string[] } };
  expect(config.config.Env.length).toBeGreaterThan(0);
  expect(config.config.Env.filter((e) => e.includes(secret) || e.startsWith("SECRET_TOKEN=") || e.startsWith("GREETING="))).toEqual([]);
  expect(JSON.stringify(image.launchEnv)).not.toContain(secret);
  // Nor left on the builder's disk: the build's directory, <platform>/env included, is gone.
  expect(await readdir(join(dir, "builds"))).toEqual([]);
});
