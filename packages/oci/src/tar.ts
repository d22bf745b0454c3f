/**
 * Deterministic tar of a directory tree.
 *
 * Invariant: identical content (names, bytes, permission bits, symlink targets) gives
 * byte-identical output, whatever the file mtimes, owners, inode order or umask of the
 * machine that wrote the files. That is what makes a layer's diff_id (and, with the
 * deterministic gzip of layer.ts, its blob digest) a function of content alone, so a
 * rebuild that did not change a layer does not upload it again.
 *
 * Format: POSIX ustar headers, a PAX extended header only where ustar cannot hold a
 * value (names/link targets over 100 bytes or not ASCII, sizes ≥ 8 GiB, big ids). No
 * uname/gname, no atime/ctime, fixed mtime, entries in byte order depth-first.
 */
import { lstat, opendir, open, readlink } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Invalid, BerthError } from "@berth/core";

export interface TarOptions {
  /** Path prefix inside the archive: "" or a relative path ending in "/", e.g. "app/" or "layers/web/". */
  prefix: string;
  /** Numeric owner written for the directory and everything under it (default 0). */
  uid?: number;
  gid?: number;
  /** mtime written for every entry: a Date or seconds since the epoch (default 1980-01-01T00:00:01Z, as CNB does). */
  mtime?: Date | number;
}

/** 1980-01-01T00:00:01Z: the CNB convention; some tools mistake mtime 0 for "unset". */
export const DEFAULT_MTIME = 315532801;

const BLOCK = 512;
const READ_CHUNK = 1 << 20;
const MAX_OCTAL_11 = 0o77777777777; // size and mtime fields: 11 octal digits
const MAX_OCTAL_7 = 0o7777777; // uid and gid fields: 7 octal digits
const PREFIX_PARENT_MODE = 0o755;

/**
 * Streams a deterministic, uncompressed tar of `dir` under `opts.prefix`.
 * Regular files, directories and symlinks (kept as links) are archived; a device file,
 * fifo or socket anywhere in the tree fails the stream with Invalid. Hard links are
 * stored as separate regular files, so the output does not depend on inode identity.
 */
export function tarDirectory(dir: string, opts: TarOptions): Readable {
  const o = normalizeOptions(opts);
  return Readable.from(entries(dir, o), { objectMode: false, highWaterMark: READ_CHUNK });
}

interface NormalizedOptions {
  prefix: string;
  uid: number;
  gid: number;
  mtime: number;
}

function normalizeOptions(opts: TarOptions): NormalizedOptions {
  const { prefix } = opts;
  if (prefix !== "" && (!prefix.endsWith("/") || prefix.startsWith("/") || prefix.split("/").slice(0, -1).some((p) => p === "" || p === "." || p === ".."))) {
    throw new Invalid(`tar prefix must be "" or a relative path ending in "/" without "." or ".." parts, got ${JSON.stringify(prefix)}`);
  }
  const uid = opts.uid ?? 0;
  const gid = opts.gid ?? 0;
  for (const [k, v] of [["uid", uid], ["gid", gid]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new Invalid(`tar ${k} must be a non-negative integer, got ${v}`);
  }
  const raw = opts.mtime ?? DEFAULT_MTIME;
  const mtime = raw instanceof Date ? Math.floor(raw.getTime() / 1000) : Math.floor(raw);
  if (!Number.isSafeInteger(mtime) || mtime < 0 || mtime > MAX_OCTAL_11) throw new Invalid(`tar mtime out of range: ${String(raw)}`);
  return { prefix, uid, gid, mtime };
}

interface Entry {
  name: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  linkname?: string;
}

async function* entries(dir: string, o: NormalizedOptions): AsyncGenerator<Buffer> {
  const root = await lstat(dir).catch((e: unknown) => {
    throw new Invalid(`cannot archive ${dir}: ${(e as Error).message}`);
  });
  if (!root.isDirectory()) throw new Invalid(`cannot archive ${dir}: not a directory`);

  // Parents of the prefix ("layers/" for "layers/web/") belong to the image, not the layer owner.
  const parts = o.prefix.split("/").slice(0, -1);
  for (let i = 0; i < parts.length - 1; i++) {
    const name = parts.slice(0, i + 1).join("/") + "/";
    yield header({ name, type: "directory", mode: PREFIX_PARENT_MODE, uid: 0, gid: 0, mtime: o.mtime, size: 0 });
  }
  if (o.prefix !== "") {
    yield header({ name: o.prefix, type: "directory", mode: root.mode & 0o777, uid: o.uid, gid: o.gid, mtime: o.mtime, size: 0 });
  }
  yield* walk(dir, o.prefix, o);
  yield Buffer.alloc(2 * BLOCK);
}

async function* walk(dirPath: string, archivePrefix: string, o: NormalizedOptions): AsyncGenerator<Buffer> {
  const names: string[] = [];
  for await (const d of await opendir(dirPath)) names.push(d.name);
  names.sort(byCodeUnit);
  for (const name of names) {
    const path = join(dirPath, name);
    const st = await lstat(path);
    const archiveName = archivePrefix + name;
    // Setuid/setgid/sticky bits are dropped: an app layer has no business carrying them.
    const mode = st.mode & 0o777;
    const base = { uid: o.uid, gid: o.gid, mtime: o.mtime, mode };
    if (st.isDirectory()) {
      yield header({ ...base, name: archiveName + "/", type: "directory", size: 0 });
      yield* walk(path, archiveName + "/", o);
    } else if (st.isSymbolicLink()) {
      yield header({ ...base, name: archiveName, type: "symlink", size: 0, linkname: await readlink(path) });
    } else if (st.isFile()) {
      yield header({ ...base, name: archiveName, type: "file", size: st.size });
      yield* fileContent(path, st.size);
    } else {
      const kind = st.isFIFO() ? "fifo" : st.isSocket() ? "socket" : st.isCharacterDevice() ? "character device" : st.isBlockDevice() ? "block device" : "special file";
      throw new Invalid(`cannot archive ${archiveName}: it is a ${kind}; layers may hold only regular files, directories and symlinks`);
    }
  }
}

async function* fileContent(path: string, size: number): AsyncGenerator<Buffer> {
  const fh = await open(path, "r");
  try {
    let remaining = size;
    while (remaining > 0) {
      const buf = Buffer.allocUnsafe(Math.min(remaining, READ_CHUNK));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) throw changedWhileArchiving(path);
      remaining -= bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
    // The header already promised `size` bytes: a file that grew would silently lose its tail.
    const { bytesRead } = await fh.read(Buffer.alloc(1), 0, 1, null);
    if (bytesRead !== 0) throw changedWhileArchiving(path);
  } finally {
    await fh.close();
  }
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  if (pad > 0) yield Buffer.alloc(pad);
}

function changedWhileArchiving(path: string): BerthError {
  return new BerthError("internal_error", `${path} changed size while it was being archived`);
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const TYPEFLAG = { file: "0", symlink: "2", directory: "5" } as const;

/** The ustar header for `e`, preceded by a PAX header when some value does not fit ustar. */
function header(e: Entry): Buffer {
  const pax: [string, string][] = [];
  const linkname = e.linkname ?? "";
  if (!fitsUstar(e.name)) pax.push(["path", e.name]);
  if (!fitsUstar(linkname)) pax.push(["linkpath", linkname]);
  if (e.size > MAX_OCTAL_11) pax.push(["size", String(e.size)]);
  if (e.uid > MAX_OCTAL_7) pax.push(["uid", String(e.uid)]);
  if (e.gid > MAX_OCTAL_7) pax.push(["gid", String(e.gid)]);

  const main = ustarBlock({
    name: pax.some(([k]) => k === "path") ? asciiFallback(e.name) : e.name,
    mode: e.mode,
    uid: Math.min(e.uid, MAX_OCTAL_7),
    gid: Math.min(e.gid, MAX_OCTAL_7),
    size: Math.min(e.size, MAX_OCTAL_11),
    mtime: e.mtime,
    typeflag: TYPEFLAG[e.type],
    linkname: pax.some(([k]) => k === "linkpath") ? asciiFallback(linkname) : linkname,
  });
  if (pax.length === 0) return main;

  const body = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const paxHeader = ustarBlock({
    // A fixed name (GNU tar puts its pid here, which would break determinism).
    name: "././@PaxHeader",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: e.mtime,
    typeflag: "x",
    linkname: "",
  });
  const pad = Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK);
  return Buffer.concat([paxHeader, body, pad, main]);
}

function fitsUstar(s: string): boolean {
  return Buffer.byteLength(s) <= 100 && /^[\x20-\x7e]*$/.test(s);
}

/** What ustar-only readers see in place of a PAX path: printable ASCII, at most 100 bytes. */
function asciiFallback(s: string): string {
  const ascii = s.replace(/[^\x20-\x7e]/g, "_");
  return ascii.length <= 100 ? ascii : ascii.slice(ascii.length - 100);
}

/** A PAX record is "<len> <key>=<value>\n", where <len> counts its own digits. */
function paxRecord(key: string, value: string): Buffer {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest);
  let len = restLen + String(restLen).length;
  if (String(len).length + restLen !== len) len = restLen + String(len).length;
  return Buffer.from(`${len}${rest}`);
}

interface UstarFields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, 100, "utf8");
  octal(b, 100, 8, f.mode);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, f.mtime);
  b.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  b.write(f.typeflag, 156, 1, "ascii");
  b.write(f.linkname, 157, 100, "utf8");
  b.write("ustar\x0000", 257, 8, "ascii");
  // uname/gname (265, 297) stay empty: numeric owner only.
  octal(b, 329, 8, 0);
  octal(b, 337, 8, 0);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, "0") + "\x00 ", 148, 8, "ascii");
  return b;
}

/** Zero-padded octal filling the field but its last byte, which stays NUL. */
function octal(b: Buffer, offset: number, width: number, value: number): void {
  b.write(value.toString(8).padStart(width - 1, "0"), offset, width - 1, "ascii");
}
