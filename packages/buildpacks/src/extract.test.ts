import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";
import { Invalid, TooLarge } from "@berth/core";
import { extractTarball, type ExtractLimits } from "./extract.ts";

type Entry = Partial<tar.Header> & { name: string; body?: string | Buffer };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry(h, body ?? (h.type === "file" || h.type === undefined ? "" : Buffer.alloc(0)), (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

const limits: ExtractLimits = { maxBytes: 1024 * 1024, maxEntries: 100 };

let tmp: string;
let outside: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "berth-extract-"));
  outside = path.join(tmp, "outside");
  await fs.mkdir(outside);
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function expectRejected(buf: Buffer, kind: typeof Invalid | typeof TooLarge, message: RegExp, l: ExtractLimits = limits) {
  const dest = path.join(tmp, "app");
  await expect(extractTarball(Readable.from([buf]), dest, l)).rejects.toSatisfy((e: unknown) => e instanceof kind && message.test((e as Error).message));
  // Nothing left behind: no dest, no staging dir, nothing outside.
  expect((await fs.readdir(tmp)).sort()).toEqual(["outside"]);
  expect(await fs.readdir(outside)).toEqual([]);
}

describe("extractTarball", () => {
  it("extracts a plain tar and strips a single top-level directory", async () => {
    const buf = await makeTar([
      { name: "myapp-main/", type: "directory" },
      { name: "myapp-main/package.json", body: "{}" },
      { name: "myapp-main/bin/run", body: "#!/bin/sh\n", mode: 0o4755 },
      { name: "myapp-main/lib/link", type: "symlink", linkname: "../package.json" },
    ]);
    const dest = path.join(tmp, "app");
    const res = await extractTarball(Readable.from([gzipSync(buf)]), dest, limits);
    expect(res.stripped).toBe("myapp-main");
    expect(await fs.readFile(path.join(dest, "package.json"), "utf8")).toBe("{}");
    const st = await fs.stat(path.join(dest, "bin/run"));
    expect(st.mode & 0o7777).toBe(0o755); // setuid dropped
    expect(await fs.readFile(path.join(dest, "lib/link"), "utf8")).toBe("{}");
  });

  it("keeps several top-level entries as they are, from a file path", async () => {
    const buf = await makeTar([{ name: "a.txt", body: "a" }, { name: "./b/c.txt", body: "c" }]);
    const file = path.join(tmp, "src.tar");
    await fs.writeFile(file, buf);
    const dest = path.join(tmp, "app");
    const res = await extractTarball(file, dest, limits);
    expect(res).toMatchObject({ stripped: null, entries: 2, bytes: 2 });
    expect(await fs.readFile(path.join(dest, "b/c.txt"), "utf8")).toBe("c");
    await fs.rm(file);
  });

  it("rejects .. in entry names", async () => {
    await expectRejected(await makeTar([{ name: "ok.txt", body: "x" }, { name: "../outside/evil", body: "x" }]), Invalid, /contains "\.\."/);
  });

  it("rejects absolute paths", async () => {
    await expectRejected(await makeTar([{ name: path.join(outside, "evil"), body: "x" }]), Invalid, /absolute path/);
  });

  it("rejects symlinks pointing outside, absolute or relative", async () => {
    await expectRejected(await makeTar([{ name: "l", type: "symlink", linkname: outside }]), Invalid, /absolute path/);
    await expectRejected(await makeTar([{ name: "d/l", type: "symlink", linkname: "../../outside" }]), Invalid, /outside the app directory/);
  });

  it("rejects writing through a symlink created by the archive", async () => {
    await expectRejected(
      await makeTar([
        { name: "sub/", type: "directory" },
        { name: "l", type: "symlink", linkname: "sub" },
        { name: "l/evil", body: "x" },
      ]),
      Invalid,
      /through a symlink/,
    );
  });

  it("rejects a symlink chain that escapes only when resolved for real", async () => {
    // lexically d/up/.. is d, but up -> . so it really is the parent of the tree
    await expectRejected(
      await makeTar([
        { name: "up", type: "symlink", linkname: "." },
        { name: "esc", type: "symlink", linkname: "up/../outside" },
      ]),
      Invalid,
      /resolves outside/,
    );
  });

  it("rejects hard links to files outside the archive", async () => {
    await expectRejected(await makeTar([{ name: "h", type: "link", linkname: "../outside/x" }]), Invalid, /contains "\.\."/);
    await expectRejected(await makeTar([{ name: "h", type: "link", linkname: "/etc/passwd" }]), Invalid, /absolute path/);
    await expectRejected(await makeTar([{ name: "h", type: "link", linkname: "etc/passwd" }]), Invalid, /not a file in the archive/);
  });

  it("rejects device files and fifos", async () => {
    await expectRejected(await makeTar([{ name: "dev", type: "character-device", devmajor: 1, devminor: 3 }]), Invalid, /character-device/);
    await expectRejected(await makeTar([{ name: "p", type: "fifo" }]), Invalid, /fifo/);
  });

  it("rejects too many entries", async () => {
    const entries = Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, body: "x" }));
    await expectRejected(await makeTar(entries), TooLarge, /more than 10 entries/, { maxBytes: 1e6, maxEntries: 10 });
  });

  it("stops a gzip bomb while streaming", async () => {
    // 64 MB of zeros compresses to ~64 KB; the limit is 1 MB.
    const big = await makeTar([{ name: "zeros", body: Buffer.alloc(64 * 1024 * 1024) }]);
    const bomb = gzipSync(big, { level: 9 });
    expect(bomb.length).toBeLessThan(200 * 1024);
    const started = Date.now();
    await expectRejected(bomb, TooLarge, /expands to more than 1 MB/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("rejects garbage and empty archives with a clear message", async () => {
    await expectRejected(Buffer.from("this is not a tarball at all, just text ".repeat(20)), Invalid, /not a valid \.tar/);
    await expectRejected(gzipSync(Buffer.from("nope")), Invalid, /not a valid \.tar|empty/);
  });

  it("refuses an existing destination", async () => {
    await expect(extractTarball(Readable.from([await makeTar([{ name: "a", body: "a" }])]), outside, limits)).rejects.toThrow(/already exists/);
  });
});
