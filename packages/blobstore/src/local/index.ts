/**
 * Local blob store: objects are files under one directory. The embedded default;
 * the API serves these bytes itself, so signedUrl() returns null.
 *
 * Layout under root:
 *   objects/  the key tree: "a/b/c" is objects/a/b/c~ (directories a and b, file "c~")
 *   tmp/      writes in progress; a put renames its temp file into objects/
 *
 * Object files carry the "~" suffix and segment names escape "%" and "~", so a file
 * name can never equal a directory name: "a" and "a/b" can both exist, as on S3.
 *
 * Containment: no key can name a path outside objects/ (validateKey forbids "..",
 * leading "/" and NUL), and symlinks are never followed: directories are created one
 * component at a time and checked with lstat, reads check that the parent's realpath
 * is its canonical path, and files are opened with O_NOFOLLOW. list() skips symlinks.
 */
import { createHash, randomUUID } from "node:crypto";
import { constants, createWriteStream } from "node:fs";
import * as fsp from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Invalid, NotFound } from "@berth/core";
import {
  type BlobInfo,
  type BlobStore,
  type PutOptions,
  type PutResult,
  type SignedMethod,
  validateExpiry,
  validateKey,
  validatePrefix,
} from "../port.ts";

export interface LocalBlobStoreOptions {
  /** Directory that holds the store; created if missing. */
  root: string;
}

const FILE_SUFFIX = "~";
const NAME_MAX = 255;
/** Temp files older than this are leftovers of a crashed writer. */
const STALE_TMP_MS = 24 * 3600_000;

/** A BlobStore in a local directory. */
export function createLocalBlobStore(options: LocalBlobStoreOptions): BlobStore {
  return new LocalBlobStore(path.resolve(options.root));
}

function escapeSegment(segment: string): string {
  return segment.replace(/[%~]/g, (c) => (c === "%" ? "%25" : "%7E"));
}

/** The segment a directory entry name stands for, or null if no key maps to it. */
function unescapeName(name: string): string | null {
  const segment = name.replace(/%25|%7E/g, (e) => (e === "%25" ? "%" : "~"));
  return escapeSegment(segment) === name ? segment : null;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

interface KeyPath {
  /** Escaped directory names from objects/ down to the file's parent. */
  dirNames: string[];
  dir: string;
  file: string;
}

class LocalBlobStore implements BlobStore {
  readonly #root: string;
  #ready: Promise<{ objects: string; tmp: string }> | undefined;

  constructor(root: string) {
    this.#root = root;
  }

  /** Creates the layout on first use (no I/O at construction). */
  #dirs(): Promise<{ objects: string; tmp: string }> {
    this.#ready ??= (async () => {
      await fsp.mkdir(this.#root, { recursive: true });
      const real = await fsp.realpath(this.#root);
      const objects = path.join(real, "objects");
      const tmp = path.join(real, "tmp");
      await fsp.mkdir(objects, { recursive: true });
      await fsp.mkdir(tmp, { recursive: true });
      await removeStaleTemps(tmp);
      return { objects, tmp };
    })();
    this.#ready.catch(() => {
      this.#ready = undefined;
    });
    return this.#ready;
  }

  async #keyPath(key: string): Promise<KeyPath> {
    validateKey(key);
    const { objects } = await this.#dirs();
    const names = key.split("/").map(escapeSegment);
    const fileName = names.pop()! + FILE_SUFFIX;
    for (const name of [...names, fileName]) {
      if (Buffer.byteLength(name) > NAME_MAX) {
        throw new Invalid(`Blob key ${JSON.stringify(key)} has a segment too long for the local store.`);
      }
    }
    const dir = path.join(objects, ...names);
    return { dirNames: names, dir, file: path.join(dir, fileName) };
  }

  /** Whether dir exists and reaches it through no symlink. */
  async #isCanonicalDir(dir: string): Promise<boolean> {
    try {
      return (await fsp.realpath(dir)) === dir;
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR" || errno(e) === "ELOOP") return false;
      throw e;
    }
  }

  /** mkdir -p that refuses to pass through anything but real directories. */
  async #ensureDir(dirNames: string[]): Promise<void> {
    const { objects } = await this.#dirs();
    let cur = objects;
    for (const name of dirNames) {
      cur = path.join(cur, name);
      try {
        await fsp.mkdir(cur);
      } catch (e) {
        if (errno(e) !== "EEXIST") throw e;
        const st = await fsp.lstat(cur);
        if (!st.isDirectory()) throw new Invalid("Blob key leads outside the store (not a directory).");
      }
    }
  }

  async put(key: string, body: Buffer | Readable, _opts?: PutOptions): Promise<PutResult> {
    const kp = await this.#keyPath(key);
    const { tmp } = await this.#dirs();
    const tmpFile = path.join(tmp, randomUUID());
    const hash = createHash("sha256");
    let size = 0;
    try {
      const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer | string>) {
          for await (const chunk of chunks) {
            const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
            hash.update(buf);
            size += buf.length;
            yield buf;
          }
        },
        // flush: fsync before close, so the rename below never publishes a file
        // whose bytes are not on disk yet.
        createWriteStream(tmpFile, { flags: "wx", flush: true }),
      );
      // A concurrent delete() may prune the parent between ensureDir and rename.
      for (let attempt = 0; ; attempt++) {
        await this.#ensureDir(kp.dirNames);
        try {
          await fsp.rename(tmpFile, kp.file);
          break;
        } catch (e) {
          if (errno(e) !== "ENOENT" || attempt >= 4) throw e;
        }
      }
    } catch (e) {
      await fsp.rm(tmpFile, { force: true }).catch(() => {});
      throw e;
    }
    return { size, sha256: hash.digest("hex") };
  }

  async get(key: string): Promise<Readable> {
    const kp = await this.#keyPath(key);
    if (!(await this.#isCanonicalDir(kp.dir))) throw new NotFound("blob");
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(kp.file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if (["ENOENT", "ELOOP", "ENOTDIR", "EISDIR"].includes(errno(e) ?? "")) throw new NotFound("blob");
      throw e;
    }
    const st = await fh.stat().catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
    if (!st.isFile()) {
      await fh.close();
      throw new NotFound("blob");
    }
    // The open handle keeps these bytes readable even if the key is deleted or
    // overwritten (rename) while the caller streams.
    return fh.createReadStream();
  }

  async head(key: string): Promise<BlobInfo | null> {
    const kp = await this.#keyPath(key);
    if (!(await this.#isCanonicalDir(kp.dir))) return null;
    try {
      const st = await fsp.lstat(kp.file);
      return st.isFile() ? { size: st.size } : null;
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return null;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    const kp = await this.#keyPath(key);
    if (!(await this.#isCanonicalDir(kp.dir))) return;
    try {
      await fsp.unlink(kp.file);
    } catch (e) {
      if (errno(e) === "ENOENT") return;
      throw e;
    }
    // Prune now-empty parents so the tree does not keep every prefix ever used.
    let dir = kp.dir;
    for (let i = kp.dirNames.length; i > 0; i--) {
      try {
        await fsp.rmdir(dir);
      } catch {
        break; // not empty (or already gone): stop, parents are then not empty either
      }
      dir = path.dirname(dir);
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    const { objects } = await this.#dirs();
    const slash = prefix.lastIndexOf("/");
    const dirSegments = slash >= 0 ? prefix.slice(0, slash).split("/") : [];
    // No key has an empty, "." or ".." segment, so such a prefix matches nothing.
    if (dirSegments.some((s) => s === "" || s === "." || s === "..")) return;
    const dir = path.join(objects, ...dirSegments.map(escapeSegment));
    if (!(await this.#isCanonicalDir(dir))) return;
    yield* walk(dir, slash >= 0 ? prefix.slice(0, slash + 1) : "", prefix.slice(slash + 1));
  }

  async signedUrl(key: string, _method: SignedMethod, expiresInSec: number): Promise<string | null> {
    validateKey(key);
    validateExpiry(expiresInSec);
    return null;
  }
}

/** Keys under dir in ascending byte order; segmentFilter restricts the first level. */
async function* walk(dir: string, keyPrefix: string, segmentFilter: string): AsyncGenerator<string> {
  let entries;
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return; // removed while listing
    throw e;
  }
  const items: { segment: string; name: string; isDir: boolean; sortKey: Buffer }[] = [];
  for (const entry of entries) {
    // Symlinks are neither files nor directories here: never followed, never listed.
    const isDir = entry.isDirectory();
    if (!isDir && !(entry.isFile() && entry.name.endsWith(FILE_SUFFIX))) continue;
    const segment = unescapeName(isDir ? entry.name : entry.name.slice(0, -FILE_SUFFIX.length));
    if (segment === null || segment === "" || !segment.startsWith(segmentFilter)) continue;
    // All keys under directory "a" start with "a/", so ordering "a/" against file
    // names orders the whole subtree correctly among its siblings.
    items.push({ segment, name: entry.name, isDir, sortKey: Buffer.from(isDir ? segment + "/" : segment) });
  }
  items.sort((x, y) => Buffer.compare(x.sortKey, y.sortKey));
  for (const item of items) {
    if (item.isDir) yield* walk(path.join(dir, item.name), `${keyPrefix}${item.segment}/`, "");
    else yield keyPrefix + item.segment;
  }
}

async function removeStaleTemps(tmp: string): Promise<void> {
  const cutoff = Date.now() - STALE_TMP_MS;
  for (const name of await fsp.readdir(tmp)) {
    const file = path.join(tmp, name);
    try {
      if ((await fsp.lstat(file)).mtimeMs < cutoff) await fsp.rm(file, { force: true });
    } catch {
      // another process may be cleaning up too
    }
  }
}
