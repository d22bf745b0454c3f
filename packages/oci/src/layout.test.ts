import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeLayer } from "./layer.ts";
import { buildImage, MEDIA_TYPE_LAYER_GZIP, OciLayout } from "./layout.ts";
import { tarDirectory } from "./tar.ts";

const run = promisify(execFile);
const sha = (b: Uint8Array | string) => "sha256:" + createHash("sha256").update(b).digest("hex");

let tmp: string;
let appDir: string;
let depsDir: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "berth-layout-"));
  appDir = join(tmp, "src-app");
  depsDir = join(tmp, "src-deps");
  await mkdir(join(appDir, "bin"), { recursive: true });
  await writeFile(join(appDir, "bin", "web"), "#!/bin/sh\nexec node server.js\n", { mode: 0o755 });
  await writeFile(join(appDir, "server.js"), "console.log('hi')\n");
  await symlink("bin/web", join(appDir, "start"));
  await mkdir(join(depsDir, "node", "bin"), { recursive: true });
  await writeFile(join(depsDir, "node", "bin", "node"), Buffer.alloc(200_000, 1), { mode: 0o755 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("writeLayer", () => {
  it("gives the same diff_id, digest and size for the same directory twice", async () => {
    const a = await OciLayout.open(join(tmp, "det-a"));
    const b = await OciLayout.open(join(tmp, "det-b"));
    const la = await writeLayer(a, tarDirectory(appDir, { prefix: "app/", uid: 1000, gid: 1000 }));
    const lb = await writeLayer(b, tarDirectory(appDir, { prefix: "app/", uid: 1000, gid: 1000 }));
    expect(lb).toEqual(la);
    expect(la.mediaType).toBe(MEDIA_TYPE_LAYER_GZIP);

    const blob = await readFile(a.blobPath(la.digest));
    expect(sha(blob)).toBe(la.digest);
    expect(blob.length).toBe(la.size);
    expect(sha(gunzipSync(blob))).toBe(la.diffId);
    // gzip header: magic, deflate, no FNAME/FCOMMENT flags, mtime 0.
    expect([...blob.subarray(0, 8)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);

    const other = await writeLayer(a, tarDirectory(appDir, { prefix: "app/", uid: 1001, gid: 1000 }));
    expect(other.diffId).not.toBe(la.diffId);
  });

  it("stores nothing when the tar stream fails", async () => {
    const layout = await OciLayout.open(join(tmp, "fail"));
    const bad = join(tmp, "bad-src");
    await mkdir(bad);
    await writeFile(join(bad, "a"), "a");
    await run("mkfifo", [join(bad, "b")]);
    await expect(writeLayer(layout, tarDirectory(bad, { prefix: "app/" }))).rejects.toThrow(/fifo/);
    expect(await readdir(join(layout.dir, "blobs", "sha256"))).toEqual([]);
    expect(await readdir(join(layout.dir, ".berth-tmp"))).toEqual([]);
  });
});

describe("OciLayout", () => {
  it("writes blobs atomically, skips present ones and checks digests on read", async () => {
    const layout = await OciLayout.open(join(tmp, "blobs"));
    const ref = await layout.writeBlob("hello");
    expect(ref).toEqual({ digest: sha("hello"), size: 5 });
    expect(await layout.hasBlob(ref.digest)).toBe(true);
    expect((await layout.readBlob(ref.digest)).toString()).toBe("hello");
    expect(await layout.writeBlob("hello")).toEqual(ref);
    await expect(layout.writeBlobStream(["x"].map((s) => Buffer.from(s)), { digest: sha("y") })).rejects.toThrow(/digest mismatch/);
    expect(await layout.hasBlob(sha("x"))).toBe(false);

    await writeFile(layout.blobPath(ref.digest), "tampered");
    await expect(layout.readBlob(ref.digest)).rejects.toThrow(/corrupt/);
    await expect(layout.readBlob(sha("absent"))).rejects.toMatchObject({ id: "not_found" });
    expect(() => layout.blobPath("sha256:../../etc/passwd")).toThrow(/digest/);

    // Reopening keeps what is there.
    const again = await OciLayout.open(layout.dir);
    expect(await again.hasBlob(ref.digest)).toBe(true);
  });

  it("builds a valid image that skopeo and umoci read", async () => {
    const layout = await OciLayout.open(join(tmp, "image"));
    const deps = await writeLayer(layout, tarDirectory(depsDir, { prefix: "layers/deps/", uid: 1000, gid: 1000 }), {
      annotations: { "org.opencontainers.image.title": "deps" },
    });
    const app = await writeLayer(layout, tarDirectory(appDir, { prefix: "app/", uid: 1000, gid: 1000 }));
    const config = {
      Env: ["PATH=/layers/deps/node/bin:/usr/bin:/bin", "PORT=5000"],
      Entrypoint: ["/app/bin/web"],
      Cmd: [],
      WorkingDir: "/app",
      User: "1000:1000",
      Labels: { "io.berth.app": "demo" },
      ExposedPorts: ["5000"],
    };
    const built = await buildImage(layout, { layers: [deps, app], config, tag: "v1" });

    const manifestBytes = await layout.readBlob(built.manifestDigest);
    expect(JSON.parse(manifestBytes.toString())).toEqual(built.manifest);
    expect(built.manifest).toMatchObject({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: built.configDigest },
      layers: [
        { mediaType: MEDIA_TYPE_LAYER_GZIP, digest: deps.digest, size: deps.size, annotations: { "org.opencontainers.image.title": "deps" } },
        { mediaType: MEDIA_TYPE_LAYER_GZIP, digest: app.digest, size: app.size },
      ],
    });
    const configBytes = await layout.readBlob(built.configDigest);
    expect(built.manifest.config.size).toBe(configBytes.length);
    const imageConfig = JSON.parse(configBytes.toString());
    expect(imageConfig).toMatchObject({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [deps.diffId, app.diffId] },
      config: { ...config, ExposedPorts: { "5000/tcp": {} } },
    });
    expect(imageConfig.history).toHaveLength(2);

    expect(JSON.parse(await readFile(join(layout.dir, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" });
    const index = await layout.readIndex();
    expect(index.manifests).toEqual([
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: built.manifestDigest,
        size: manifestBytes.length,
        annotations: { "org.opencontainers.image.ref.name": "v1" },
        platform: { architecture: "amd64", os: "linux" },
      },
    ]);

    // Same inputs, same digests: the config has no wall-clock time in it.
    const rebuilt = await buildImage(layout, { layers: [deps, app], config, tag: "v1" });
    expect(rebuilt.manifestDigest).toBe(built.manifestDigest);
    expect((await layout.readIndex()).manifests).toHaveLength(1);

    const { stdout } = await run("skopeo", ["inspect", `oci:${layout.dir}:v1`]);
    const inspected = JSON.parse(stdout);
    expect(inspected.Digest).toBe(built.manifestDigest);
    expect(inspected.Layers).toEqual([deps.digest, app.digest]);

    const bundle = join(tmp, "bundle");
    await run("umoci", ["unpack", "--rootless", "--image", `${layout.dir}:v1`, bundle]);
    expect(await readFile(join(bundle, "rootfs", "app", "server.js"), "utf8")).toBe("console.log('hi')\n");
    expect(await readlink(join(bundle, "rootfs", "app", "start"))).toBe("bin/web");
    expect((await readFile(join(bundle, "rootfs", "layers", "deps", "node", "bin", "node"))).length).toBe(200_000);
  });

  it("refuses layers that are not in the layout or have the wrong size", async () => {
    const layout = await OciLayout.open(join(tmp, "bad-image"));
    const app = await writeLayer(layout, tarDirectory(appDir, { prefix: "app/" }));
    await expect(buildImage(layout, { layers: [{ ...app, size: app.size + 1 }], config: {} })).rejects.toThrow(/stored blob has/);
    await expect(buildImage(layout, { layers: [{ ...app, digest: sha("nope") }], config: {} })).rejects.toMatchObject({ id: "not_found" });
    await expect(buildImage(layout, { layers: [app], config: { Env: ["NOEQUALS"] } })).rejects.toThrow(/NAME=value/);
    await expect(buildImage(layout, { layers: [app], config: {}, tag: "-bad" })).rejects.toThrow(/tag/);
  });
});
