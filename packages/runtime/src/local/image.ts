/**
 * Turns an ImageRef into directories on this machine. A "dir" image is used as is.
 * An OCI image layout is unpacked once per manifest digest into a cache under the
 * state dir: gzip (or plain) tar layers applied in order, whiteouts honoured, and
 * any entry that would land outside the root (`..`, absolute links followed by a
 * later entry, paths through symbolic links) refused.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { Invalid } from "@berth/core";
import tar from "tar-stream";
import type { Extract } from "tar-stream";

type Entry = Extract extends AsyncIterable<infer S> ? S : never;
import type { ImageRef } from "../port.ts";

export interface PreparedImage {
  /** Host directory the app sees at /app (and /workspace, where buildpacks put it). */
  appDir: string;
  /** Host directory of Cloud Native Buildpacks launch layers, seen at /layers. */
  layersDir?: string;
  /** `bin` directories inside layersDir (relative), put on PATH. */
  layerBins: string[];
  /** Env of the image config; config vars override it. */
  env: Record<string, string>;
}

/** Files of unpacked images belong to the dyno user; their mount is read-only anyway. */
export const DYNO_UID = 65534;
export const DYNO_GID = 65534;

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export class ImageCache {
  readonly #dir: string;
  readonly #inflight = new Map<string, Promise<PreparedImage>>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  async prepare(ref: ImageRef): Promise<PreparedImage> {
    if (ref.kind === "dir") return prepareDir(ref.dir);
    if (ref.kind === "registry") {
      throw new Invalid(`the local runtime runs images from an OCI layout or a directory, not from a registry (${ref.reference}); store the image as a layout first`);
    }
    const key = `${path.resolve(ref.dir)}@${ref.digest}`;
    let p = this.#inflight.get(key);
    if (!p) {
      p = this.#unpackOnce(ref.dir, ref.digest);
      this.#inflight.set(key, p);
      p.catch(() => this.#inflight.delete(key));
    }
    return p;
  }

  async #unpackOnce(layoutDir: string, digest: string): Promise<PreparedImage> {
    if (!DIGEST.test(digest)) throw new Invalid(`image digest ${JSON.stringify(digest)} is not a sha256 digest`);
    const final = path.join(this.#dir, digest.slice("sha256:".length));
    const metaFile = path.join(final, "image.json");
    const cached = await readJson<{ env: Record<string, string> }>(metaFile).catch(() => undefined);
    if (cached) return describe(path.join(final, "rootfs"), cached.env);

    const { layers, env } = await readManifest(layoutDir, digest);
    await fs.mkdir(this.#dir, { recursive: true, mode: 0o755 });
    const tmp = path.join(this.#dir, `.tmp-${randomBytes(6).toString("hex")}`);
    const rootfs = path.join(tmp, "rootfs");
    try {
      await fs.mkdir(rootfs, { recursive: true, mode: 0o755 });
      for (const layer of layers) await applyLayer(rootfs, blobPath(layoutDir, layer.digest), layer);
      await fs.chmod(tmp, 0o755);
      await fs.writeFile(path.join(tmp, "image.json"), JSON.stringify({ digest, env }));
      await fs.rename(tmp, final).catch(async (e: NodeJS.ErrnoException) => {
        // Another runtime on the same state dir won the race: use its copy.
        if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
        await fs.rm(tmp, { recursive: true, force: true });
      });
    } catch (e) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return describe(path.join(final, "rootfs"), env);
  }
}

async function prepareDir(dir: string): Promise<PreparedImage> {
  const real = await fs.realpath(dir).catch(() => {
    throw new Invalid(`image directory ${dir} does not exist`);
  });
  if (!(await fs.stat(real)).isDirectory()) throw new Invalid(`image directory ${dir} is not a directory`);
  return { appDir: real, layerBins: [], env: {} };
}

/** A buildpack image keeps the app in /workspace (CNB) or /app (Heroku), launch layers in /layers. */
async function describe(rootfs: string, env: Record<string, string>): Promise<PreparedImage> {
  let appDir = rootfs;
  for (const candidate of ["app", "workspace"]) {
    if (await isDir(path.join(rootfs, candidate))) {
      appDir = path.join(rootfs, candidate);
      break;
    }
  }
  const layers = path.join(rootfs, "layers");
  if (!(await isDir(layers))) return { appDir, layerBins: [], env };
  const layerBins: string[] = [];
  for (const bp of (await fs.readdir(layers)).sort()) {
    if (!(await isDir(path.join(layers, bp)))) continue;
    for (const layer of (await fs.readdir(path.join(layers, bp))).sort()) {
      if (await isDir(path.join(layers, bp, layer, "bin"))) layerBins.push(`${bp}/${layer}/bin`);
    }
  }
  return { appDir, layersDir: layers, layerBins, env };
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  platform?: { os?: string; architecture?: string };
}

async function readManifest(layoutDir: string, digest: string): Promise<{ layers: Descriptor[]; env: Record<string, string> }> {
  const index = await readJson<{ manifests?: Descriptor[] }>(path.join(layoutDir, "index.json")).catch((e: unknown) => {
    throw new Invalid(`${layoutDir} is not an OCI image layout (index.json: ${(e as Error).message})`);
  });
  const listed = index.manifests?.find((m) => m.digest === digest);
  let manifest = await readBlobJson<{ mediaType?: string; manifests?: Descriptor[]; layers?: Descriptor[]; config?: Descriptor }>(layoutDir, digest).catch(() => {
    throw new Invalid(`image ${digest} is not in the layout ${layoutDir}`);
  });
  if (INDEX_TYPES.has(manifest.mediaType ?? listed?.mediaType ?? "") || manifest.manifests) {
    const pick =
      manifest.manifests?.find((m) => m.platform?.os === "linux" && m.platform.architecture === "amd64") ?? manifest.manifests?.[0];
    if (!pick) throw new Invalid(`image index ${digest} lists no manifest`);
    manifest = await readBlobJson(layoutDir, pick.digest);
  }
  if (!manifest.layers || !manifest.config) throw new Invalid(`${digest} is not an image manifest`);
  const config = await readBlobJson<{ config?: { Env?: string[] } }>(layoutDir, manifest.config.digest);
  const env: Record<string, string> = {};
  for (const kv of config.config?.Env ?? []) {
    const eq = kv.indexOf("=");
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { layers: manifest.layers, env };
}

function blobPath(layoutDir: string, digest: string): string {
  if (!DIGEST.test(digest)) throw new Invalid(`blob digest ${JSON.stringify(digest)} is not a sha256 digest`);
  return path.join(layoutDir, "blobs", "sha256", digest.slice("sha256:".length));
}

async function readBlobJson<T>(layoutDir: string, digest: string): Promise<T> {
  const buf = await fs.readFile(blobPath(layoutDir, digest));
  const actual = "sha256:" + createHash("sha256").update(buf).digest("hex");
  if (actual !== digest) throw new Invalid(`blob ${digest} has digest ${actual}`);
  return JSON.parse(buf.toString("utf8")) as T;
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, "utf8")) as T;
}

async function isDir(p: string): Promise<boolean> {
  return (await fs.lstat(p).catch(() => undefined))?.isDirectory() ?? false;
}

/** Applies one layer to `root`. Exported for tests. */
export async function applyLayer(root: string, blob: string, desc: Descriptor): Promise<void> {
  const gzip = desc.mediaType === undefined || /gzip/.test(desc.mediaType);
  if (desc.mediaType && /zstd/.test(desc.mediaType)) throw new Invalid(`layer ${desc.digest}: zstd layers are not supported`);
  const hash = createHash("sha256");
  const source = createReadStream(blob);
  source.on("data", (c) => hash.update(c as Buffer));
  const ex = tar.extract();
  const feed = gzip ? pipeline(source, createGunzip(), ex) : pipeline(source, ex);
  const seen = new Set<string>();
  const consume = (async () => {
    try {
      for await (const entry of ex) await applyEntry(root, entry, seen);
    } catch (e) {
      ex.destroy(e as Error);
      throw e;
    }
  })();
  const [fed, consumed] = await Promise.allSettled([feed, consume]);
  if (consumed.status === "rejected") throw consumed.reason;
  if (fed.status === "rejected") throw new Invalid(`layer ${desc.digest} is not a valid ${gzip ? "gzip " : ""}tar: ${(fed.reason as Error).message}`);
  const actual = "sha256:" + hash.digest("hex");
  if (actual !== desc.digest) throw new Invalid(`layer ${desc.digest} has digest ${actual}`);
}

/** The entry's path relative to the root; `..` anywhere is refused, a leading `/` means the root. */
function inside(name: string): string {
  if (name.includes("\0")) throw new Invalid(`layer entry ${JSON.stringify(name)} has a NUL byte`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new Invalid(`layer entry ${JSON.stringify(name)} escapes the image root`);
  return parts.join("/");
}

/** Refuses to go through a symbolic link inside the root (a link to / then "link/etc/passwd"). */
async function assertNoLinkOnPath(root: string, rel: string): Promise<void> {
  let cur = root;
  for (const part of rel.split("/").filter(Boolean)) {
    cur = path.join(cur, part);
    const st = await fs.lstat(cur).catch(() => undefined);
    if (!st) return;
    if (st.isSymbolicLink()) throw new Invalid(`layer entry under ${JSON.stringify(rel)} goes through a symbolic link`);
    if (!st.isDirectory()) throw new Invalid(`layer entry under ${JSON.stringify(rel)} goes through a file`);
  }
}

async function removeExisting(target: string, keepDir: boolean): Promise<void> {
  const st = await fs.lstat(target).catch(() => undefined);
  if (!st) return;
  if (st.isDirectory() && keepDir) return;
  await fs.rm(target, { recursive: true, force: true });
}

async function applyEntry(root: string, entry: Entry, seen: Set<string>): Promise<void> {
  const h = entry.header;
  try {
    const name = inside(h.name);
    if (name === "") return;
    const dir = path.posix.dirname(name) === "." ? "" : path.posix.dirname(name);
    const base = path.posix.basename(name);
    await assertNoLinkOnPath(root, dir);

    if (base.startsWith(".wh.")) {
      if (base === ".wh..wh..opq") {
        // Opaque directory: what lower layers put there goes; this layer's entries stay.
        const abs = path.join(root, dir);
        for (const child of await fs.readdir(abs).catch(() => [] as string[])) {
          const rel = dir ? `${dir}/${child}` : child;
          if (!seen.has(rel)) await fs.rm(path.join(abs, child), { recursive: true, force: true });
        }
      } else {
        await fs.rm(path.join(root, dir, base.slice(".wh.".length)), { recursive: true, force: true });
      }
      return;
    }

    const target = path.join(root, name);
    const mode = (h.mode ?? 0o644) & 0o1777; // no setuid/setgid from images
    seen.add(name);
    await fs.mkdir(path.join(root, dir), { recursive: true, mode: 0o755 });
    switch (h.type) {
      case "directory":
        await removeExisting(target, true);
        await fs.mkdir(target, { recursive: true });
        await fs.chmod(target, mode);
        await fs.lchown(target, DYNO_UID, DYNO_GID);
        return;
      case "file":
      case "contiguous-file":
        await removeExisting(target, false);
        await pipeline(entry, createWriteStream(target, { flags: "wx", mode }));
        await fs.chmod(target, mode);
        await fs.lchown(target, DYNO_UID, DYNO_GID);
        return;
      case "symlink":
        await removeExisting(target, false);
        await fs.symlink(h.linkname ?? "", target);
        await fs.lchown(target, DYNO_UID, DYNO_GID);
        return;
      case "link": {
        const from = inside(h.linkname ?? "");
        await assertNoLinkOnPath(root, path.posix.dirname(from));
        const src = path.join(root, from);
        const st = await fs.lstat(src).catch(() => undefined);
        if (!st || st.isDirectory()) throw new Invalid(`hard link ${JSON.stringify(name)} points to a missing file ${JSON.stringify(h.linkname)}`);
        await removeExisting(target, false);
        await fs.link(src, target);
        return;
      }
      default:
        // Devices and fifos have no place in an app image.
        return;
    }
  } finally {
    entry.resume();
  }
}
