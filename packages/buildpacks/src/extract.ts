/**
 * Safe extraction of an app's source archive (.tar or .tar.gz, detected by its
 * magic bytes, not its name).
 *
 * Invariants:
 * - Nothing is ever written outside destDir: entries are written into a fresh
 *   staging directory beside it, files are opened O_EXCL|O_NOFOLLOW, no entry may
 *   pass through a symlink the archive created, and every symlink must resolve
 *   (lexically, and really once extraction ends) inside the tree.
 * - On any failure the staging directory is removed and destDir is not created.
 * - Limits are enforced while streaming: the decompressed byte count is checked
 *   on every chunk, so a gzip bomb is stopped at the limit, not after.
 * - A single top-level directory (GitHub-style tarballs) is stripped, as Heroku does.
 */
import { createReadStream } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { randomBytes } from "node:crypto";
import * as tar from "tar-stream";
import { Invalid, TooLarge } from "@berth/core";

export interface ExtractLimits {
  /** Total bytes of file content after decompression. */
  maxBytes: number;
  /** Number of archive entries (files, directories, links). */
  maxEntries: number;
  /** Longest relative path accepted. */
  maxPathLength?: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxBytes: 500 * 1024 * 1024,
  maxEntries: 100_000,
  maxPathLength: 1024,
};

export interface ExtractResult {
  entries: number;
  bytes: number;
  /** The top-level directory that was stripped, if any. */
  stripped: string | null;
}

type Kind = "file" | "directory" | "symlink";

/**
 * Extracts a .tar or .tar.gz (a stream, or a file path) into destDir, which must
 * not exist yet. Throws Invalid for unsafe or malformed archives, TooLarge over limits.
 */
export async function extractTarball(
  source: NodeJS.ReadableStream | Readable | string,
  destDir: string,
  limits: ExtractLimits = DEFAULT_EXTRACT_LIMITS,
): Promise<ExtractResult> {
  const dest = path.resolve(destDir);
  if (await exists(dest)) throw new Invalid(`Extraction target ${dest} already exists.`);
  const staging = `${dest}.partial-${randomBytes(6).toString("hex")}`;
  await fs.mkdir(path.dirname(dest), { recursive: true });
  await fs.mkdir(staging, { mode: 0o755 });
  const input = typeof source === "string" ? createReadStream(source) : source instanceof Readable ? source : Readable.from(source as AsyncIterable<Buffer>);
  try {
    const res = await extractInto(input, staging, limits);
    const top = await singleTopDir(staging);
    if (top !== null) {
      await fs.rename(path.join(staging, top), dest);
      await fs.rm(staging, { recursive: true, force: true });
    } else {
      await fs.rename(staging, dest);
    }
    return { ...res, stripped: top };
  } catch (e) {
    input.destroy();
    await fs.rm(staging, { recursive: true, force: true });
    throw e;
  }
}

async function extractInto(input: Readable, root: string, limits: ExtractLimits): Promise<Omit<ExtractResult, "stripped">> {
  const maxPath = limits.maxPathLength ?? 1024;
  const kinds = new Map<string, Kind>([["", "directory"]]);
  const symlinks: string[] = [];
  let entries = 0;
  let bytes = 0;
  const tooLarge = () => new TooLarge(`Source archive expands to more than ${fmtBytes(limits.maxBytes)}; the limit is ${fmtBytes(limits.maxBytes)}.`);

  const extract = tar.extract();
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      entries++;
      if (entries > limits.maxEntries) throw new TooLarge(`Source archive has more than ${limits.maxEntries} entries.`);
      const rel = safeRelative(h.name, maxPath);
      const kind = entryKind(h.type, h.name);
      if (rel === "") {
        // "./" itself: nothing to create
        if (kind !== "directory") throw new Invalid(`Source archive entry "${h.name}" is not a directory.`);
        entry.resume();
        continue;
      }
      const parent = path.posix.dirname(rel);
      await ensureDirs(root, parent === "." ? "" : parent, kinds);
      const abs = path.join(root, ...rel.split("/"));
      const existing = kinds.get(rel);
      if (existing !== undefined && (existing !== kind || kind === "symlink")) {
        throw new Invalid(`Source archive has conflicting entries for "${rel}".`);
      }
      if (kind === "directory") {
        if (existing === undefined) await fs.mkdir(abs, { mode: 0o755 });
        kinds.set(rel, "directory");
        entry.resume();
      } else if (kind === "symlink") {
        const target = h.linkname ?? "";
        checkSymlinkTarget(rel, target);
        await fs.symlink(target, abs);
        kinds.set(rel, "symlink");
        symlinks.push(rel);
        entry.resume();
      } else if (h.type === "link") {
        // A hard link may only point at a regular file this archive already wrote.
        const target = safeRelative(h.linkname ?? "", maxPath);
        if (kinds.get(target) !== "file") throw new Invalid(`Source archive hard link "${rel}" points at "${h.linkname}", which is not a file in the archive.`);
        if (existing === "file") await fs.unlink(abs);
        await fs.link(path.join(root, ...target.split("/")), abs);
        kinds.set(rel, "file");
        entry.resume();
      } else {
        const size = h.size ?? 0;
        if (bytes + size > limits.maxBytes) throw tooLarge();
        if (existing === "file") await fs.unlink(abs);
        const mode = (h.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
        const fh = await fs.open(abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, mode);
        try {
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            bytes += chunk.length;
            if (bytes > limits.maxBytes) throw tooLarge();
            await fh.write(chunk);
          }
        } finally {
          await fh.close();
        }
        kinds.set(rel, "file");
      }
    }
  })();

  // Counts decompressed bytes (headers included) as they stream, so a bomb stops at the limit.
  let streamed = 0;
  const streamLimit = limits.maxBytes + 512 * (limits.maxEntries * 3 + 16);
  const counter = new Transform({
    transform(chunk: Buffer, _enc: string, cb: TransformCallback) {
      streamed += chunk.length;
      if (streamed > streamLimit) cb(tooLarge());
      else cb(null, chunk);
    },
  });

  const head = await peek(input, 2);
  const gz = head.buf.length >= 2 && head.buf[0] === 0x1f && head.buf[1] === 0x8b;
  const stages: NodeJS.ReadWriteStream[] = gz ? [createGunzip(), counter] : [counter];
  const piping = pipeline(head.stream, ...(stages as [Transform]), extract as unknown as NodeJS.WritableStream);
  // If the entry loop fails first, the parser must be torn down or the pipeline stalls on backpressure.
  const entriesDone = done.catch((e: unknown) => {
    extract.destroy();
    head.stream.destroy();
    throw e;
  });
  const settled = await Promise.allSettled([piping, entriesDone]);
  const errors = settled.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  if (errors.length > 0) {
    const known = errors.find((e) => e instanceof Invalid || e instanceof TooLarge);
    if (known) throw known;
    const msg = errors[0] instanceof Error ? errors[0].message : String(errors[0]);
    throw new Invalid(`Source archive is not a valid .tar or .tar.gz file (${msg}).`);
  }
  if (entries === 0) throw new Invalid("Source archive is empty.");

  // Final check against the real filesystem: chains like `up -> .` plus `x -> up/../..` pass
  // a lexical check but resolve outside.
  const realRoot = await fs.realpath(root);
  for (const rel of symlinks) {
    let real: string;
    try {
      real = await fs.realpath(path.join(root, ...rel.split("/")));
    } catch {
      continue; // dangling, and lexically inside: harmless
    }
    if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
      throw new Invalid(`Source archive symlink "${rel}" resolves outside the app directory.`);
    }
  }
  return { entries, bytes };
}

function entryKind(type: string | null | undefined, name: string): Kind {
  switch (type) {
    case "file":
    case "contiguous-file":
    case "link":
    case undefined:
    case null:
      return "file";
    case "directory":
      return "directory";
    case "symlink":
      return "symlink";
    case "character-device":
    case "block-device":
    case "fifo":
      throw new Invalid(`Source archive entry "${name}" is a ${type}; only files, directories and links are allowed.`);
    default:
      throw new Invalid(`Source archive entry "${name}" has unsupported type ${type}.`);
  }
}

/** Normalizes an entry name to a relative posix path, refusing absolute paths and `..`. */
function safeRelative(name: string, maxPath: number): string {
  if (name.includes("\0")) throw new Invalid(`Source archive entry name contains a NUL byte.`);
  if (name.startsWith("/") || /^[A-Za-z]:[\\/]/.test(name) || name.startsWith("\\")) {
    throw new Invalid(`Source archive entry "${name}" has an absolute path.`);
  }
  const parts = name.split(/[\\/]+/).filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new Invalid(`Source archive entry "${name}" contains "..".`);
  const rel = parts.join("/");
  if (rel.length > maxPath) throw new Invalid(`Source archive entry path is longer than ${maxPath} characters.`);
  return rel;
}

function checkSymlinkTarget(rel: string, target: string): void {
  if (target === "" || target.includes("\0")) throw new Invalid(`Source archive symlink "${rel}" has an empty target.`);
  if (path.posix.isAbsolute(target)) throw new Invalid(`Source archive symlink "${rel}" points at the absolute path "${target}".`);
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
  if (resolved === ".." || resolved.startsWith("../")) {
    throw new Invalid(`Source archive symlink "${rel}" points at "${target}", outside the app directory.`);
  }
}

/** Creates missing parent directories, refusing to go through anything but directories the archive made. */
async function ensureDirs(root: string, rel: string, kinds: Map<string, Kind>): Promise<void> {
  if (rel === "") return;
  let cur = "";
  for (const part of rel.split("/")) {
    cur = cur === "" ? part : `${cur}/${part}`;
    const k = kinds.get(cur);
    if (k === "directory") continue;
    if (k === "symlink") throw new Invalid(`Source archive entry under "${cur}" would be written through a symlink.`);
    if (k === "file") throw new Invalid(`Source archive entry under "${cur}" would be written inside a file.`);
    await fs.mkdir(path.join(root, ...cur.split("/")), { mode: 0o755 });
    kinds.set(cur, "directory");
  }
}

async function singleTopDir(dir: string): Promise<string | null> {
  const ents = await fs.readdir(dir, { withFileTypes: true });
  if (ents.length === 1 && ents[0]!.isDirectory()) return ents[0]!.name;
  return null;
}

/** Reads the first n bytes of a stream and returns a stream that still yields them. */
async function peek(input: Readable, n: number): Promise<{ buf: Buffer; stream: Readable }> {
  const it = input[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let len = 0;
  while (len < n) {
    const r = await it.next();
    if (r.done) break;
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    chunks.push(b);
    len += b.length;
  }
  const buf = Buffer.concat(chunks);
  const stream = Readable.from(
    (async function* () {
      if (buf.length) yield buf;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value as Buffer;
      }
    })(),
    { objectMode: false },
  );
  return { buf, stream };
}

/** Whether anything (a dangling symlink too) is at `p`. */
export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

function fmtBytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round(n / (1024 * 1024))} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}
