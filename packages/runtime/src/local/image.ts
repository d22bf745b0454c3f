/**
 * Turns an ImageRef into directories on this machine. A "dir" image is used as is.
 * An OCI image layout is prepared from a cache keyed by layer digest, because
 * successive builds of an app share all but their small app layer:
 *
 *   <cache>/layers/<hex>/tree     one layer, unpacked once (temp dir, then rename)
 *   <cache>/layers/<hex>/layer.json  its whiteouts, opaque dirs and top-level entries
 *   <cache>/merged/<key>/tree     a subtree (`workspace`, `layers`…) assembled from
 *                                 several layers, keyed by the subtree and the chain
 *                                 of layer digests that contribute to it
 *   <cache>/images/<hex>.json     one image: env, layers, where /app and /layers come from
 *
 * An instance sees two subtrees of the image: the app (`app/`, else `workspace/`, else
 * the root) and the launch layers (`layers/`). When a single layer contributes to a
 * subtree (the usual buildpack image: the app layer alone has `workspace/`), that
 * layer's directory is used in place: no copy at all. When several do (the Node.js
 * runtime layer and the node_modules layer both live under `layers/`), they are
 * assembled once per chain with hard links, whiteouts applied, and the result is
 * reused by every later image with the same chain. So a redeploy that changes only
 * the app layer unpacks that layer and links nothing.
 *
 * Every entry that would land outside its tree (`..`, a path through a symbolic
 * link or a file, a hard link to a file not in the same layer) is refused; setuid
 * bits are dropped; files belong to the dyno user.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { Invalid } from "@berth/core";
import tar from "tar-stream";
import type { Extract } from "tar-stream";
import type { ImageRef } from "../port.ts";

type Entry = Extract extends AsyncIterable<infer S> ? S : never;

export interface PreparedImage {
  /** Host directory the app sees at /app (and /workspace, where buildpacks put it). */
  appDir: string;
  /** Host directory of Cloud Native Buildpacks launch layers, seen at /layers. */
  layersDir?: string;
  /** `bin` directories inside layersDir (relative), put on PATH. */
  layerBins: string[];
  /** Env of the image config; config vars override it. */
  env: Record<string, string>;
  /** Manifest digest of a layout image; what keeps its cache entries from being pruned. */
  digest?: string;
}

/** Files of unpacked images belong to the dyno user; their mount is read-only anyway. */
export const DYNO_UID = 65534;
export const DYNO_GID = 65534;

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** What unpacking a layer learnt about it; whiteouts apply to lower layers only, so they are kept aside. */
interface LayerMeta {
  digest: string;
  /** Paths (relative to the image root) this layer deletes from lower layers. */
  whiteouts: string[];
  /** Directories whose lower-layer contents this layer hides ("" is the root). */
  opaque: string[];
  /** Kind of each top-level entry of the layer. */
  top: Record<string, "dir" | "other">;
}

interface ImageMeta {
  digest: string;
  env: Record<string, string>;
  layers: string[];
  /** Keys of the merged subtrees this image uses. */
  merged: string[];
  /** Relative to the cache dir. */
  appDir: string;
  layersDir?: string;
  layerBins: string[];
}

export interface ImageCacheOptions {
  /** Called once per layer actually unpacked (tests count these). */
  onLayerUnpacked?: (digest: string) => void;
}

export interface PruneResult {
  images: number;
  layers: number;
  merged: number;
}

export class ImageCache {
  readonly #dir: string;
  readonly #onLayer?: (digest: string) => void;
  readonly #images = new Map<string, Promise<PreparedImage>>();
  readonly #layers = new Map<string, Promise<LayerMeta>>();
  readonly #merges = new Map<string, Promise<string>>();
  /** Prepares in progress; prune waits for them and holds new ones back (it would delete what they link). */
  #active = 0;
  #idle: Array<() => void> = [];
  #pruning: Promise<unknown> | undefined;

  constructor(dir: string, opts: ImageCacheOptions = {}) {
    this.#dir = dir;
    this.#onLayer = opts.onLayerUnpacked;
  }

  async prepare(ref: ImageRef): Promise<PreparedImage> {
    if (ref.kind === "dir") return prepareDir(ref.dir);
    if (ref.kind === "registry") {
      throw new Invalid(`the local runtime runs images from an OCI layout or a directory, not from a registry (${ref.reference}); store the image as a layout first`);
    }
    if (!DIGEST.test(ref.digest)) throw new Invalid(`image digest ${JSON.stringify(ref.digest)} is not a sha256 digest`);
    while (this.#pruning) await this.#pruning;
    this.#active++;
    try {
      return await once(this.#images, ref.digest, () => this.#image(ref.dir, ref.digest));
    } finally {
      if (--this.#active === 0) for (const wake of this.#idle.splice(0)) wake();
    }
  }

  /**
   * Deletes images not in `keep` (manifest digests) beyond the `keepUnused` most recently
   * prepared ones, then every layer and merged subtree no remaining image uses. The caller
   * must list every image it runs or is about to run in `keep`.
   */
  async prune(o: { keep: Iterable<string>; keepUnused?: number }): Promise<PruneResult> {
    while (this.#pruning) await this.#pruning;
    const run = (async () => {
      if (this.#active > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
      return this.#prune(new Set(o.keep), o.keepUnused ?? 0);
    })();
    this.#pruning = run;
    try {
      return await run;
    } finally {
      this.#pruning = undefined;
    }
  }

  async #prune(keep: Set<string>, keepUnused: number): Promise<PruneResult> {
    const result: PruneResult = { images: 0, layers: 0, merged: 0 };
    const imagesDir = path.join(this.#dir, "images");
    const metas: Array<{ meta: ImageMeta; file: string; used: number }> = [];
    for (const name of await readdirOr(imagesDir)) {
      const file = path.join(imagesDir, name);
      const meta = await readJson<ImageMeta>(file).catch(() => undefined);
      const st = await fs.stat(file).catch(() => undefined);
      if (!meta || !st || `${meta.digest.slice(7)}.json` !== name) {
        await fs.rm(file, { recursive: true, force: true });
        continue;
      }
      metas.push({ meta, file, used: st.mtimeMs });
    }
    metas.sort((a, b) => b.used - a.used);
    let spare = keepUnused;
    const kept: ImageMeta[] = [];
    for (const m of metas) {
      if (keep.has(m.meta.digest) || spare-- > 0) {
        kept.push(m.meta);
        continue;
      }
      await fs.rm(m.file, { force: true });
      this.#images.delete(m.meta.digest);
      result.images++;
    }
    const layers = new Set(kept.flatMap((m) => m.layers.map((d) => d.slice(7))));
    const merged = new Set(kept.flatMap((m) => m.merged));
    for (const [sub, live, count] of [["layers", layers, "layers"], ["merged", merged, "merged"]] as const) {
      for (const name of await readdirOr(path.join(this.#dir, sub))) {
        if (live.has(name)) continue;
        await fs.rm(path.join(this.#dir, sub, name), { recursive: true, force: true });
        if (sub === "layers") this.#layers.delete(`sha256:${name}`);
        else this.#merges.delete(name);
        result[count]++;
      }
    }
    // Temp dirs of an interrupted prepare, and the cache format of earlier versions (<hex>/rootfs).
    for (const name of await readdirOr(this.#dir)) {
      if (name === "images" || name === "layers" || name === "merged") continue;
      await fs.rm(path.join(this.#dir, name), { recursive: true, force: true });
    }
    return result;
  }

  async #image(layoutDir: string, digest: string): Promise<PreparedImage> {
    const hex = digest.slice(7);
    const metaFile = path.join(this.#dir, "images", `${hex}.json`);
    const cached = await readJson<ImageMeta>(metaFile).catch(() => undefined);
    if (cached && (await this.#intact(cached))) {
      // The file's mtime is the image's last use, for prune's keepUnused.
      const now = new Date();
      await fs.utimes(metaFile, now, now).catch(() => undefined);
      return this.#prepared(cached);
    }

    const { layers: descriptors, env } = await readManifest(layoutDir, digest);
    const layers: LayerMeta[] = [];
    // One at a time: unpacking is CPU-bound, and an earlier failure saves the later work.
    for (const d of descriptors) layers.push(await once(this.#layers, d.digest, () => this.#layer(layoutDir, d)));

    const merged: string[] = [];
    const subtree = async (sub: string): Promise<string | undefined> => {
      const chain = contributors(layers, sub);
      if (chain.length === 0) return undefined;
      if (chain.length === 1) return path.join("layers", chain[0]!.digest.slice(7), "tree", sub);
      const key = createHash("sha256").update(JSON.stringify([sub, chain.map((l) => l.digest)])).digest("hex");
      merged.push(key);
      await once(this.#merges, key, () => this.#merge(key, sub, chain));
      return path.join("merged", key, "tree");
    };
    const appSub = ["app", "workspace"].find((s) => contributors(layers, s).length > 0) ?? "";
    const appDir = (await subtree(appSub))!;
    const layersDir = await subtree("layers");
    const layerBins = layersDir ? await binDirs(path.join(this.#dir, layersDir)) : [];
    const meta: ImageMeta = { digest, env, layers: layers.map((l) => l.digest), merged, appDir, layerBins };
    if (layersDir) meta.layersDir = layersDir;
    await writeAtomic(this.#dir, metaFile, JSON.stringify(meta));
    return this.#prepared(meta);
  }

  /** A cached image whose layers or merged subtrees went missing (a crash mid-prune) is prepared again. */
  async #intact(meta: ImageMeta): Promise<boolean> {
    const dirs = [meta.appDir, meta.layersDir].filter((d) => d !== undefined);
    for (const d of dirs) if (!(await isDir(path.join(this.#dir, d)))) return false;
    return true;
  }

  #prepared(meta: ImageMeta): PreparedImage {
    const out: PreparedImage = { appDir: path.join(this.#dir, meta.appDir), layerBins: meta.layerBins, env: meta.env, digest: meta.digest };
    if (meta.layersDir) out.layersDir = path.join(this.#dir, meta.layersDir);
    return out;
  }

  async #layer(layoutDir: string, desc: Descriptor): Promise<LayerMeta> {
    const blob = blobPath(layoutDir, desc.digest);
    const final = path.join(this.#dir, "layers", desc.digest.slice(7));
    const cached = await readJson<LayerMeta>(path.join(final, "layer.json")).catch(() => undefined);
    if (cached) return cached;
    const tmp = await this.#tempDir();
    try {
      const tree = path.join(tmp, "tree");
      await fs.mkdir(tree, { mode: 0o755 });
      const meta = await unpackLayer(tree, blob, desc);
      await fs.writeFile(path.join(tmp, "layer.json"), JSON.stringify(meta));
      await publish(tmp, final);
      this.#onLayer?.(desc.digest);
      return meta;
    } catch (e) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** Assembles `sub` from `chain` (lowest first) with hard links; each layer's whiteouts apply to the layers below it. */
  async #merge(key: string, sub: string, chain: LayerMeta[]): Promise<string> {
    const final = path.join(this.#dir, "merged", key);
    if (await isDir(path.join(final, "tree"))) return final;
    const tmp = await this.#tempDir();
    try {
      const tree = path.join(tmp, "tree");
      await fs.mkdir(tree, { mode: 0o755 });
      await fs.lchown(tree, DYNO_UID, DYNO_GID);
      for (const [i, layer] of chain.entries()) {
        if (i > 0) await applyWhiteouts(tree, sub, layer);
        await linkTree(path.join(this.#dir, "layers", layer.digest.slice(7), "tree", sub), tree, i === 0);
      }
      await publish(tmp, final);
      return final;
    } catch (e) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  async #tempDir(): Promise<string> {
    await fs.mkdir(this.#dir, { recursive: true, mode: 0o755 });
    const tmp = path.join(this.#dir, `.tmp-${randomBytes(6).toString("hex")}`);
    await fs.mkdir(tmp, { mode: 0o755 });
    return tmp;
  }
}

/** Dedupes concurrent work on one key; a failure is forgotten so the next call retries. */
function once<T>(inflight: Map<string, Promise<T>>, key: string, work: () => Promise<T>): Promise<T> {
  let p = inflight.get(key);
  if (!p) {
    p = work();
    inflight.set(key, p);
    p.then(
      () => inflight.delete(key),
      () => inflight.delete(key),
    );
  }
  return p;
}

/** Renames a finished temp dir into place; another prepare that won the race keeps its copy. */
async function publish(tmp: string, final: string): Promise<void> {
  await fs.mkdir(path.dirname(final), { recursive: true, mode: 0o755 });
  await fs.rename(tmp, final).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST") throw e;
    await fs.rm(tmp, { recursive: true, force: true });
  });
}

async function writeAtomic(cacheDir: string, file: string, text: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = path.join(cacheDir, `.tmp-${randomBytes(6).toString("hex")}`);
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

/**
 * The layers whose `sub` directory makes up the image's `sub`, lowest first. A layer that
 * whites `sub` out, makes the root opaque, or puts a non-directory there hides those below.
 */
function contributors(layers: LayerMeta[], sub: string): LayerMeta[] {
  let chain: LayerMeta[] = [];
  for (const l of layers) {
    if (sub === "") {
      chain.push(l);
      continue;
    }
    if (l.opaque.includes("") || l.opaque.includes(sub) || l.whiteouts.includes(sub)) chain = [];
    const kind = l.top[sub];
    if (kind === "dir") chain.push(l);
    else if (kind) chain = [];
  }
  return chain;
}

async function prepareDir(dir: string): Promise<PreparedImage> {
  const real = await fs.realpath(dir).catch(() => {
    throw new Invalid(`image directory ${dir} does not exist`);
  });
  if (!(await fs.stat(real)).isDirectory()) throw new Invalid(`image directory ${dir} is not a directory`);
  return { appDir: real, layerBins: [], env: {} };
}

/** `<buildpack>/<layer>/bin` directories of a CNB layers dir, in a stable order. */
async function binDirs(layers: string): Promise<string[]> {
  const out: string[] = [];
  for (const bp of (await readdirOr(layers)).sort()) {
    if (!(await isDir(path.join(layers, bp)))) continue;
    for (const layer of (await readdirOr(path.join(layers, bp))).sort()) {
      if (await isDir(path.join(layers, bp, layer, "bin"))) out.push(`${bp}/${layer}/bin`);
    }
  }
  return out;
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

async function readdirOr(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => []);
}

async function isDir(p: string): Promise<boolean> {
  return (await fs.lstat(p).catch(() => undefined))?.isDirectory() ?? false;
}

/**
 * Unpacks one layer into the empty directory `tree`. Whiteouts are recorded, not applied:
 * they concern lower layers, which this tree does not contain. Exported for tests.
 */
export async function unpackLayer(tree: string, blob: string, desc: Descriptor): Promise<LayerMeta> {
  const gzip = desc.mediaType === undefined || /gzip/.test(desc.mediaType);
  if (desc.mediaType && /zstd/.test(desc.mediaType)) throw new Invalid(`layer ${desc.digest}: zstd layers are not supported`);
  const hash = createHash("sha256");
  // Big chunks: each becomes one awaited write, and zlib's default 16 KiB makes thousands.
  const source = createReadStream(blob, { highWaterMark: 1024 * 1024 });
  source.on("data", (c) => hash.update(c as Buffer));
  const ex = tar.extract();
  const feed = gzip ? pipeline(source, createGunzip({ chunkSize: 256 * 1024 }), ex) : pipeline(source, ex);
  const state: UnpackState = { tree, kinds: new Map([["", "dir"]]), whiteouts: new Set(), opaque: new Set() };
  const consume = (async () => {
    try {
      for await (const entry of ex) await applyEntry(state, entry);
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
  const top: Record<string, "dir" | "other"> = {};
  for (const [rel, kind] of state.kinds) if (rel !== "" && !rel.includes("/")) top[rel] = kind === "dir" ? "dir" : "other";
  return { digest: desc.digest, whiteouts: [...state.whiteouts], opaque: [...state.opaque], top };
}

interface UnpackState {
  tree: string;
  /**
   * Every path this layer created, by kind. The tree starts empty, so this is the whole
   * truth about it: path checks need no lstat.
   */
  kinds: Map<string, "dir" | "file" | "symlink">;
  whiteouts: Set<string>;
  opaque: Set<string>;
}

/** The entry's path relative to the root; `..` anywhere is refused, a leading `/` means the root. */
function inside(name: string): string {
  if (name.includes("\0")) throw new Invalid(`layer entry ${JSON.stringify(name)} has a NUL byte`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new Invalid(`layer entry ${JSON.stringify(name)} escapes the image root`);
  return parts.join("/");
}

/** Makes `dir` (and its parents) directories of the tree; refuses to go through a link or a file. */
async function ensureDir(s: UnpackState, dir: string, entryName: string): Promise<void> {
  if (dir === "") return;
  const kind = s.kinds.get(dir);
  if (kind === "dir") return;
  if (kind === "symlink") throw new Invalid(`layer entry ${JSON.stringify(entryName)} goes through a symbolic link`);
  if (kind === "file") throw new Invalid(`layer entry ${JSON.stringify(entryName)} goes through a file`);
  await ensureDir(s, parentOf(dir), entryName);
  await fs.mkdir(path.join(s.tree, dir), { mode: 0o755 });
  await fs.lchown(path.join(s.tree, dir), DYNO_UID, DYNO_GID);
  s.kinds.set(dir, "dir");
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "" : rel.slice(0, i);
}

/** A later entry with the same path replaces an earlier one (a directory stays and merges). */
async function replace(s: UnpackState, rel: string, keepDir: boolean): Promise<void> {
  const kind = s.kinds.get(rel);
  if (!kind || (kind === "dir" && keepDir)) return;
  await fs.rm(path.join(s.tree, rel), { recursive: true, force: true });
  for (const k of [...s.kinds.keys()]) if (k === rel || k.startsWith(rel + "/")) s.kinds.delete(k);
}

async function applyEntry(s: UnpackState, entry: Entry): Promise<void> {
  const h = entry.header;
  try {
    const name = inside(h.name);
    if (name === "") return;
    const dir = parentOf(name);
    const base = name.slice(dir === "" ? 0 : dir.length + 1);
    await ensureDir(s, dir, h.name);

    if (base.startsWith(".wh.")) {
      if (base === ".wh..wh..opq") s.opaque.add(dir);
      else s.whiteouts.add(dir === "" ? base.slice(4) : `${dir}/${base.slice(4)}`);
      return;
    }

    const target = path.join(s.tree, name);
    const mode = (h.mode ?? 0o644) & 0o1777; // no setuid/setgid from images
    switch (h.type) {
      case "directory":
        await replace(s, name, true);
        if (s.kinds.get(name) !== "dir") await fs.mkdir(target, { mode });
        await fs.chmod(target, mode);
        await fs.lchown(target, DYNO_UID, DYNO_GID);
        s.kinds.set(name, "dir");
        return;
      case "file":
      case "contiguous-file": {
        await replace(s, name, false);
        const fh = await fs.open(target, "wx", mode);
        try {
          for await (const chunk of entry) await fh.write(chunk as Buffer);
          await fh.chmod(mode);
          await fh.chown(DYNO_UID, DYNO_GID);
        } finally {
          await fh.close();
        }
        s.kinds.set(name, "file");
        return;
      }
      case "symlink":
        await replace(s, name, false);
        await fs.symlink(h.linkname ?? "", target);
        await fs.lchown(target, DYNO_UID, DYNO_GID);
        s.kinds.set(name, "symlink");
        return;
      case "link": {
        // Only to a file of this same layer: lower layers are not in this tree, and
        // anything else could be outside it.
        const from = inside(h.linkname ?? "");
        if (s.kinds.get(from) !== "file") {
          throw new Invalid(`hard link ${JSON.stringify(name)} points to ${JSON.stringify(h.linkname)}, not a file of the same layer`);
        }
        await replace(s, name, false);
        await fs.link(path.join(s.tree, from), target);
        s.kinds.set(name, "file");
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

/** Deletes from `tree` (the merge so far of `sub`) what `layer` whites out, before the layer is linked in. */
async function applyWhiteouts(tree: string, sub: string, layer: LayerMeta): Promise<void> {
  const rel = (p: string): string | undefined => (sub === "" ? p : p === sub ? "" : p.startsWith(sub + "/") ? p.slice(sub.length + 1) : undefined);
  for (const o of layer.opaque) {
    const r = rel(o);
    if (r === undefined || !(await isRealDirPath(tree, r))) continue;
    const abs = path.join(tree, r);
    for (const child of await readdirOr(abs)) await fs.rm(path.join(abs, child), { recursive: true, force: true });
  }
  for (const w of layer.whiteouts) {
    const r = rel(w);
    // A path through a symbolic link names nothing of the lower layers.
    if (!r || !(await isRealDirPath(tree, parentOf(r)))) continue;
    await fs.rm(path.join(tree, r), { recursive: true, force: true });
  }
}

/** Whether every component of `rel` under `root` is a real directory (no symbolic link on the way). */
async function isRealDirPath(root: string, rel: string): Promise<boolean> {
  let cur = root;
  for (const part of rel.split("/").filter(Boolean)) {
    cur = path.join(cur, part);
    if (!(await isDir(cur))) return false;
  }
  return true;
}

/**
 * Hard-links the contents of `src` into `dst` (a real directory). A directory of the upper
 * layer merges into the lower one and takes its mode; anything else replaces what was there.
 * `fresh` says `dst` was just created, so nothing in it needs checking.
 */
async function linkTree(src: string, dst: string, fresh: boolean): Promise<void> {
  const st = await fs.lstat(src);
  await fs.chmod(dst, st.mode & 0o1777);
  const entries = await fs.readdir(src, { withFileTypes: true });
  await Promise.all(
    entries.map(async (e) => {
      const s = path.join(src, e.name);
      const d = path.join(dst, e.name);
      const existing = fresh ? undefined : await fs.lstat(d).catch(() => undefined);
      if (e.isDirectory()) {
        const merge = existing?.isDirectory() ?? false;
        if (existing && !merge) await fs.rm(d, { recursive: true, force: true });
        if (!merge) {
          await fs.mkdir(d);
          await fs.lchown(d, DYNO_UID, DYNO_GID);
        }
        await linkTree(s, d, !merge);
        return;
      }
      if (existing) await fs.rm(d, { recursive: true, force: true });
      // link(2) does not follow a symbolic link: symlinks are linked as themselves.
      await fs.link(s, d);
    }),
  );
}
