import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { promisify } from "node:util";
import { isBerthError } from "@berth/core";
import { extract } from "tar-stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tarDirectory } from "./tar.ts";

const run = promisify(execFile);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-tar-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const longName = "d".repeat(60) + "/" + "f".repeat(120) + ".txt";

async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "bin"), { recursive: true });
  await mkdir(join(root, "d".repeat(60)));
  await writeFile(join(root, "bin", "web"), "#!/bin/sh\necho hi\n");
  await chmod(join(root, "bin", "web"), 0o755);
  await writeFile(join(root, "Procfile"), "web: bin/web\n");
  await writeFile(join(root, "big.bin"), Buffer.alloc(3 * 1024 * 1024 + 17, 7));
  await writeFile(join(root, "émoji-✓.txt"), "unicode name\n");
  await writeFile(join(root, longName), "long name\n");
  await symlink("bin/web", join(root, "start"));
  await symlink("../" + "x".repeat(150), join(root, "longlink"));
  await mkdir(join(root, "empty"));
}

interface Seen {
  name: string;
  type: string | null;
  mode: number | undefined;
  uid: number | undefined;
  gid: number | undefined;
  uname: string | undefined;
  mtime: number | undefined;
  linkname: string | null | undefined;
  sha: string;
}

async function list(tar: Buffer): Promise<Seen[]> {
  const ex = extract();
  const seen: Seen[] = [];
  const done = new Promise<void>((resolve, reject) => {
    ex.on("entry", (h, stream, next) => {
      const hash = createHash("sha256");
      stream.on("data", (c) => hash.update(c as Buffer));
      stream.on("end", () => {
        seen.push({ name: h.name, type: h.type ?? null, mode: h.mode, uid: h.uid, gid: h.gid, uname: h.uname, mtime: h.mtime?.getTime(), linkname: h.linkname, sha: hash.digest("hex") });
        next();
      });
    });
    ex.on("finish", resolve);
    ex.on("error", reject);
  });
  ex.end(tar);
  await done;
  return seen;
}

describe("tarDirectory", () => {
  it("is byte-identical for identical content, whatever the mtimes", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    await makeTree(a);
    await makeTree(b);
    await utimes(join(b, "Procfile"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    const first = await buffer(tarDirectory(a, { prefix: "app/", uid: 1000, gid: 1000 }));
    const again = await buffer(tarDirectory(a, { prefix: "app/", uid: 1000, gid: 1000 }));
    const other = await buffer(tarDirectory(b, { prefix: "app/", uid: 1000, gid: 1000 }));
    expect(again.equals(first)).toBe(true);
    expect(other.equals(first)).toBe(true);
    expect(first.length % 512).toBe(0);

    await writeFile(join(b, "Procfile"), "web: bin/other\n");
    const changed = await buffer(tarDirectory(b, { prefix: "app/", uid: 1000, gid: 1000 }));
    expect(changed.equals(first)).toBe(false);
  });

  it("writes sorted entries with numeric owner, fixed mtime, symlinks and PAX long names", async () => {
    await makeTree(dir);
    const tar = await buffer(tarDirectory(dir, { prefix: "layers/web/", uid: 1001, gid: 1002, mtime: new Date("2020-01-02T03:04:05Z") }));
    const entries = await list(tar);
    expect(entries.map((e) => e.name)).toEqual([
      "layers/",
      "layers/web/",
      "layers/web/Procfile",
      "layers/web/big.bin",
      "layers/web/bin/",
      "layers/web/bin/web",
      `layers/web/${longName.split("/")[0]}/`,
      `layers/web/${longName}`,
      "layers/web/empty/",
      "layers/web/longlink",
      "layers/web/start",
      "layers/web/émoji-✓.txt",
    ]);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get("layers/")).toMatchObject({ type: "directory", uid: 0, gid: 0, mode: 0o755 });
    expect(byName.get("layers/web/bin/web")).toMatchObject({ type: "file", uid: 1001, gid: 1002, mode: 0o755, uname: "", mtime: Date.parse("2020-01-02T03:04:05Z") });
    expect(byName.get("layers/web/start")).toMatchObject({ type: "symlink", linkname: "bin/web" });
    expect(byName.get("layers/web/longlink")).toMatchObject({ type: "symlink", linkname: "../" + "x".repeat(150) });
    expect(byName.get("layers/web/big.bin")?.sha).toBe(createHash("sha256").update(Buffer.alloc(3 * 1024 * 1024 + 17, 7)).digest("hex"));

    // GNU tar reads it the same way (PAX names, numeric owners).
    await writeFile(join(dir, "..", "check.tar"), tar);
    const tarPath = join(dir, "..", "check.tar");
    const { stdout } = await run("tar", ["-tvf", tarPath, "--numeric-owner"]);
    await rm(tarPath);
    expect(stdout).toContain(`1001/1002`);
    expect(stdout).toContain(`layers/web/${longName}`);
    expect(stdout).toContain("layers/web/start -> bin/web");
    expect(stdout).toContain("layers/web/émoji-✓.txt");
  });

  it("rejects a tree holding a device file or a fifo", async () => {
    await writeFile(join(dir, "ok"), "x");
    await run("mknod", [join(dir, "null"), "c", "1", "3"]).catch(async () => {
      // Without CAP_MKNOD a fifo takes the device file's place: same code path.
      await run("mkfifo", [join(dir, "null")]);
    });
    const err = await buffer(tarDirectory(dir, { prefix: "app/" })).catch((e: unknown) => e);
    expect(isBerthError(err) && err.id).toBe("invalid_params");
    expect((err as Error).message).toMatch(/app\/null: it is a (character device|fifo)/);

    await rm(join(dir, "null"));
    await run("mkfifo", [join(dir, "pipe")]);
    await expect(buffer(tarDirectory(dir, { prefix: "app/" }))).rejects.toThrow(/app\/pipe: it is a fifo/);
  });

  it("rejects bad prefixes and a missing directory", async () => {
    expect(() => tarDirectory(dir, { prefix: "/abs/" })).toThrow(/prefix/);
    expect(() => tarDirectory(dir, { prefix: "app" })).toThrow(/prefix/);
    expect(() => tarDirectory(dir, { prefix: "../app/" })).toThrow(/prefix/);
    await expect(buffer(tarDirectory(join(dir, "nope"), { prefix: "" }))).rejects.toThrow(/cannot archive/);
  });
});
