import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { Invalid } from "@berth/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageRef } from "../port.ts";
import { ImageCache, unpackLayer } from "./image.ts";
import { removeTemps, sha, tarGz, tempDir, writeLayout, type TarEntry } from "./testing.ts";

afterAll(removeTemps);

/** Lists a tree as "path" (dirs end in /), relative to `root`. */
async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(r + "/");
        await walk(path.join(dir, e.name), r);
      } else out.push(r);
    }
  };
  await walk(root, "");
  return out.sort();
}

describe("image cache", () => {
  // A "runtime" layer of a few MB (random, so gzip cannot shrink it), a deps layer, and two app layers.
  const big: TarEntry[] = [{ name: "layers/bp/runtime/bin/", type: "directory" }];
  for (let i = 0; i < 48; i++) big.push({ name: `layers/bp/runtime/lib/part-${i}.bin`, body: randomBytes(64 * 1024) });
  big.push(
    { name: "workspace/", type: "directory" },
    { name: "workspace/lower.txt", body: "from the runtime layer" },
    { name: "workspace/gone.txt", body: "whited out by app 2" },
    { name: "workspace/dir/old.txt", body: "hidden by an opaque dir in app 2" },
  );
  const deps: TarEntry[] = [{ name: "layers/bp/deps/bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o755 }];
  const app1: TarEntry[] = [{ name: "workspace/server.js", body: "one" }];
  const app2: TarEntry[] = [
    { name: "workspace/server.js", body: "two" },
    { name: "workspace/.wh.gone.txt" },
    { name: "workspace/dir/.wh..wh..opq" },
    { name: "workspace/dir/new.txt", body: "upper" },
  ];

  let layout: string;
  let digests: { big: string; deps: string; app1: string; app2: string };
  let imageA: ImageRef;
  let imageB: ImageRef;
  beforeAll(async () => {
    layout = await tempDir("berth-layout-");
    const [b, d, a1, a2] = await Promise.all([big, deps, app1, app2].map(tarGz));
    digests = { big: sha(b!), deps: sha(d!), app1: sha(a1!), app2: sha(a2!) };
    imageA = { kind: "layout", dir: layout, digest: await writeLayout(layout, [b!, d!, a1!], ["FROM=a"]) };
    imageB = { kind: "layout", dir: layout, digest: await writeLayout(layout, [b!, d!, a2!], ["FROM=b"]) };
  });

  it("unpacks each layer once: a second image that shares all but its app layer unpacks only that, and links nothing big", async () => {
    const cacheDir = await tempDir("berth-cache-");
    const unpacked: string[] = [];
    const cache = new ImageCache(cacheDir, { onLayerUnpacked: (d) => unpacked.push(d) });

    const a = await cache.prepare(imageA);
    expect(unpacked).toEqual([digests.big, digests.deps, digests.app1]);
    const bigTree = path.join(cacheDir, "layers", digests.big.slice(7), "tree");
    const before = await fs.stat(path.join(bigTree, "layers/bp/runtime/lib/part-0.bin"));
    const beforeDir = await fs.stat(bigTree);

    unpacked.length = 0;
    const b = await cache.prepare(imageB);
    expect(unpacked).toEqual([digests.app2]);
    const after = await fs.stat(path.join(bigTree, "layers/bp/runtime/lib/part-0.bin"));
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    expect((await fs.stat(bigTree)).mtimeMs).toBe(beforeDir.mtimeMs);

    // /layers: the runtime and deps layers, assembled once and shared by both images.
    expect(b.layersDir).toBe(a.layersDir);
    expect(b.layerBins).toEqual(["bp/deps/bin", "bp/runtime/bin"]);
    const layerFiles = await tree(b.layersDir!);
    expect(layerFiles).toContain("bp/runtime/lib/part-47.bin");
    expect(layerFiles).toContain("bp/deps/bin/tool");
    // Hard links into the layer cache, not copies.
    expect((await fs.stat(path.join(b.layersDir!, "bp/runtime/lib/part-0.bin"))).ino).toBe(before.ino);

    // /app: lower files present, the whiteout and the opaque dir applied, each image its own server.js.
    expect(await tree(a.appDir)).toEqual(["dir/", "dir/old.txt", "gone.txt", "lower.txt", "server.js"]);
    expect(await tree(b.appDir)).toEqual(["dir/", "dir/new.txt", "lower.txt", "server.js"]);
    expect(await fs.readFile(path.join(a.appDir, "server.js"), "utf8")).toBe("one");
    expect(await fs.readFile(path.join(b.appDir, "server.js"), "utf8")).toBe("two");
    expect(b.env).toEqual({ FROM: "b" });
    const st = await fs.stat(path.join(b.appDir, "lower.txt"));
    expect([st.uid, st.gid]).toEqual([65534, 65534]);

    // Prepared before: nothing unpacked, nothing linked.
    unpacked.length = 0;
    const t = performance.now();
    const again = await cache.prepare(imageB);
    expect(performance.now() - t).toBeLessThan(1000);
    expect(again).toEqual(b);
    expect(unpacked).toEqual([]);
  });

  it("uses a layer's own directory when it alone makes up /app", async () => {
    const cacheDir = await tempDir("berth-cache-");
    const l = path.join(await tempDir("berth-layout-"));
    const only = await tarGz([{ name: "workspace/server.js", body: "x" }]);
    const base = await tarGz([{ name: "layers/bp/node/bin/node", body: "", mode: 0o755 }]);
    const image: ImageRef = { kind: "layout", dir: l, digest: await writeLayout(l, [base, only], []) };
    const p = await new ImageCache(cacheDir).prepare(image);
    expect(p.appDir).toBe(path.join(cacheDir, "layers", sha(only).slice(7), "tree", "workspace"));
    expect(p.layersDir).toBe(path.join(cacheDir, "layers", sha(base).slice(7), "tree", "layers"));
    expect(await fs.readdir(path.join(cacheDir, "merged")).catch(() => [])).toEqual([]);
  });

  it("prunes images not in use beyond keepUnused, and the layers only they used", async () => {
    const cacheDir = await tempDir("berth-cache-");
    const unpacked: string[] = [];
    const cache = new ImageCache(cacheDir, { onLayerUnpacked: (d) => unpacked.push(d) });
    const a = await cache.prepare(imageA);
    await cache.prepare(imageB);
    // An older cache format and an interrupted unpack go too.
    await fs.mkdir(path.join(cacheDir, "ab".repeat(32), "rootfs"), { recursive: true });
    await fs.mkdir(path.join(cacheDir, ".tmp-123456"));

    // B was used last: with one unused image kept, nothing goes.
    expect(await cache.prune({ keep: [], keepUnused: 1 })).toMatchObject({ images: 1 });
    const left = async (sub: string) => (await fs.readdir(path.join(cacheDir, sub))).sort();
    expect(await left("images")).toEqual([`${(imageB as { digest: string }).digest.slice(7)}.json`]);
    expect(await left("layers")).toEqual([digests.big, digests.deps, digests.app2].map((d) => d.slice(7)).sort());
    expect((await fs.readdir(cacheDir)).sort()).toEqual(["images", "layers", "merged"]);
    await expect(fs.access(a.appDir)).rejects.toThrow();

    // In use (keep) survives any keepUnused; re-preparing A unpacks only its app layer again.
    expect(await cache.prune({ keep: [(imageB as { digest: string }).digest], keepUnused: 0 })).toEqual({ images: 0, layers: 0, merged: 0 });
    unpacked.length = 0;
    const a2 = await cache.prepare(imageA);
    expect(unpacked).toEqual([digests.app1]);
    expect(await fs.readFile(path.join(a2.appDir, "server.js"), "utf8")).toBe("one");

    const all = await cache.prune({ keep: [], keepUnused: 0 });
    expect(all.images).toBe(2);
    expect(await left("layers")).toEqual([]);
    expect(await left("merged")).toEqual([]);
  });

  it("prepares concurrently without unpacking a shared layer twice, and prune waits for them", async () => {
    const cacheDir = await tempDir("berth-cache-");
    const unpacked: string[] = [];
    const cache = new ImageCache(cacheDir, { onLayerUnpacked: (d) => unpacked.push(d) });
    const [a, b, pruned] = await Promise.all([cache.prepare(imageA), cache.prepare(imageB), cache.prune({ keep: [], keepUnused: 0 })]);
    expect(unpacked.filter((d) => d === digests.big)).toHaveLength(1);
    // The prune ran after both prepares (it holds new ones back, and waits for running ones).
    expect(pruned.images).toBe(2);
    expect(await cache.prepare(imageA).then((p) => p.appDir)).toBe(a.appDir);
    expect(b.appDir).not.toBe(a.appDir);
  });
});

describe("layer unpacking", () => {
  it("refuses layer entries that escape the root", async () => {
    const outside = await tempDir("berth-outside-");
    const cases: TarEntry[][] = [
      [{ name: "../escape.txt", body: "x" }],
      [
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/escape.txt", body: "x" },
      ],
      [{ name: "hard", type: "link", linkname: "../../etc/passwd" }],
      // A hard link to a file of another layer (not in this tree).
      [{ name: "hard", type: "link", linkname: "etc/passwd" }],
      [
        { name: "file", body: "x" },
        { name: "file/below", body: "x" },
      ],
    ];
    for (const entries of cases) {
      const root = await tempDir("berth-root-");
      const blob = path.join(root, "..", `blob-${path.basename(root)}`);
      const gz = await tarGz(entries);
      await fs.writeFile(blob, gz);
      await expect(unpackLayer(root, blob, { digest: sha(gz), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" })).rejects.toBeInstanceOf(Invalid);
      await fs.rm(blob);
    }
    expect(await fs.readdir(outside)).toEqual([]);
  });

  it("records whiteouts instead of applying them, drops setuid bits, keeps hard links within the layer", async () => {
    const root = await tempDir("berth-root-");
    const gz = await tarGz([
      { name: "a/.wh.b" },
      { name: "a/c/.wh..wh..opq" },
      { name: "a/tool", body: "x", mode: 0o4755 },
      { name: "a/same", type: "link", linkname: "a/tool" },
      { name: "top.txt", body: "t" },
    ]);
    const blob = path.join(root, "..", `blob-${path.basename(root)}`);
    await fs.writeFile(blob, gz);
    const meta = await unpackLayer(root, blob, { digest: sha(gz) });
    await fs.rm(blob);
    expect(meta).toEqual({ digest: sha(gz), whiteouts: ["a/b"], opaque: ["a/c"], top: { a: "dir", "top.txt": "other" } });
    expect((await fs.stat(path.join(root, "a/tool"))).mode & 0o7777).toBe(0o755);
    expect((await fs.stat(path.join(root, "a/same"))).ino).toBe((await fs.stat(path.join(root, "a/tool"))).ino);
    expect((await tree(root)).filter((p) => p.includes(".wh."))).toEqual([]);
  });
});
