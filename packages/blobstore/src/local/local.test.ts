import * as fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { Invalid, NotFound } from "@berth/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blobStoreContract, readAll } from "../contract.ts";
import { createLocalBlobStore } from "./index.ts";

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "berth-blob-local-"));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

blobStoreContract("local", () => createLocalBlobStore({ root: path.join(tmp, "contract", "store") }), {
  signsUrls: false,
});

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out;
}

describe("local blob store stays inside its root", () => {
  let root: string;
  let outside: string;

  beforeAll(async () => {
    root = path.join(tmp, "contained");
    outside = path.join(tmp, "outside");
    await fsp.mkdir(outside, { recursive: true });
    await fsp.writeFile(path.join(outside, "secret~"), "secret");
    await fsp.writeFile(path.join(outside, "target"), "target");
  });

  async function outsideFiles(): Promise<string[]> {
    return (await fsp.readdir(outside)).sort();
  }

  it("rejects traversal and absolute keys without touching the disk outside", async () => {
    const store = createLocalBlobStore({ root });
    for (const key of ["../x", "../../outside/secret", "a/../../x", "/etc/passwd", path.join(outside, "x")]) {
      await expect(store.put(key, Buffer.from("x"))).rejects.toBeInstanceOf(Invalid);
      await expect(store.get(key)).rejects.toBeInstanceOf(Invalid);
    }
    expect(await outsideFiles()).toEqual(["secret~", "target"]);
    expect(await fsp.readdir(tmp)).not.toContain("x");
  });

  it("does not follow a directory symlink that points out of the root", async () => {
    const store = createLocalBlobStore({ root });
    await store.put("inside", Buffer.from("in"));
    await fsp.symlink(outside, path.join(root, "objects", "evil"));

    await expect(store.get("evil/secret")).rejects.toBeInstanceOf(NotFound);
    expect(await store.head("evil/secret")).toBeNull();
    await expect(store.put("evil/planted", Buffer.from("x"))).rejects.toBeInstanceOf(Invalid);
    await expect(store.put("evil/deeper/planted", Buffer.from("x"))).rejects.toBeInstanceOf(Invalid);
    await store.delete("evil/secret");
    expect(await collect(store.list(""))).toEqual(["inside"]);
    expect(await collect(store.list("evil/"))).toEqual([]);
    expect(await outsideFiles()).toEqual(["secret~", "target"]);
    expect(await fsp.readFile(path.join(outside, "secret~"), "utf8")).toBe("secret");
  });

  it("does not follow a file symlink that points out of the root", async () => {
    const store = createLocalBlobStore({ root });
    const link = path.join(root, "objects", "link~");
    await fsp.symlink(path.join(outside, "target"), link);

    await expect(store.get("link")).rejects.toBeInstanceOf(NotFound);
    expect(await store.head("link")).toBeNull();
    expect(await collect(store.list("li"))).toEqual([]);
    // A put replaces the link itself (rename does not follow it)...
    await store.put("link", Buffer.from("mine"));
    expect((await readAll(await store.get("link"))).toString()).toBe("mine");
    expect((await fsp.lstat(link)).isFile()).toBe(true);
    // ...and the file it pointed to is untouched.
    expect(await fsp.readFile(path.join(outside, "target"), "utf8")).toBe("target");
    await store.delete("link");
    expect(await fsp.readFile(path.join(outside, "target"), "utf8")).toBe("target");
  });

  it("leaves no temp file behind when a put fails", async () => {
    const store = createLocalBlobStore({ root: path.join(tmp, "failing") });
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(10_000);
        throw new Error("boom");
      })(),
    );
    await expect(store.put("k", failing)).rejects.toThrow("boom");
    expect(await fsp.readdir(path.join(tmp, "failing", "tmp"))).toEqual([]);
    expect(await store.head("k")).toBeNull();
  });

  it("prunes empty directories on delete and keeps keys distinct from directories", async () => {
    const dir = path.join(tmp, "pruned");
    const store = createLocalBlobStore({ root: dir });
    await store.put("a/b/c", Buffer.from("c"));
    await store.put("a", Buffer.from("a"));
    await store.delete("a/b/c");
    expect(await fsp.readdir(path.join(dir, "objects"))).toEqual(["a~"]);
    expect(await collect(store.list(""))).toEqual(["a"]);
  });
});
