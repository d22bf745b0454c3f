/**
 * An OCI image layout on a filesystem directory (image-spec image-layout.md):
 * `oci-layout`, `index.json` and content-addressed `blobs/<alg>/<hex>`.
 *
 * Invariants: a file under blobs/ is only ever created by rename() of a fully written,
 * fsynced, digest-checked temp file, so a reader never sees a partial blob; index.json
 * is replaced the same way. Index updates are serialized within one process only.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { BerthError, Invalid, NotFound } from "@berth/core";
import type { LayerDescriptor } from "./layer.ts";
import { DEFAULT_MTIME } from "./tar.ts";

export const MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json";
export const MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json";
export const MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
/** Annotation holding the tag of a manifest in index.json. */
export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

export interface BlobRef {
  digest: string;
  size: number;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE_INDEX;
  manifests: Descriptor[];
}

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** Throws Invalid unless `digest` is a sha256 or sha512 digest in canonical form. */
export function assertDigest(digest: string): void {
  if (!DIGEST_RE.test(digest)) throw new Invalid(`not a valid sha256/sha512 digest: ${JSON.stringify(digest)}`);
}

export function sha256(data: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

function hashOf(digest: string, data: Uint8Array): string {
  const alg = digest.slice(0, digest.indexOf(":"));
  return `${alg}:` + createHash(alg).update(data).digest("hex");
}

export class OciLayout {
  readonly dir: string;
  #indexQueue: Promise<unknown> = Promise.resolve();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens the layout at `dir`, creating an empty one if the directory has none. */
  static async open(dir: string): Promise<OciLayout> {
    await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
    const layoutFile = join(dir, "oci-layout");
    const existing = await readFile(layoutFile, "utf8").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (existing === undefined) {
      await writeFile(layoutFile, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    } else {
      const version = (JSON.parse(existing) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
      if (version !== "1.0.0") throw new Invalid(`${layoutFile}: unsupported imageLayoutVersion ${JSON.stringify(version)}`);
    }
    const layout = new OciLayout(dir);
    if (!(await exists(join(dir, "index.json")))) {
      await layout.#writeIndex({ schemaVersion: 2, mediaType: MEDIA_TYPE_INDEX, manifests: [] });
    }
    return layout;
  }

  blobPath(digest: string): string {
    assertDigest(digest);
    const i = digest.indexOf(":");
    return join(this.dir, "blobs", digest.slice(0, i), digest.slice(i + 1));
  }

  async hasBlob(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /** Size in bytes of a stored blob; NotFound if absent. */
  async blobSize(digest: string): Promise<number> {
    try {
      return (await stat(this.blobPath(digest))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new NotFound(`blob ${digest}`);
      throw e;
    }
  }

  /** Stores `data` (skipped when a blob with its digest is already present). */
  async writeBlob(data: Uint8Array | string): Promise<BlobRef> {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const digest = sha256(bytes);
    if (!(await this.hasBlob(digest))) {
      await this.writeBlobStream([bytes], { digest });
    }
    return { digest, size: bytes.byteLength };
  }

  /**
   * Streams a blob into the layout, hashing as it writes; the digest is known only at
   * the end. When `expected.digest` is given and does not match, nothing is stored.
   */
  async writeBlobStream(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, expected?: { digest?: string }): Promise<BlobRef> {
    const alg = expected?.digest?.startsWith("sha512:") ? "sha512" : "sha256";
    const tmpDir = join(this.dir, ".berth-tmp");
    await mkdir(tmpDir, { recursive: true });
    const tmp = join(tmpDir, randomUUID());
    const hash = createHash(alg);
    let size = 0;
    const fh = await open(tmp, "wx");
    let renamed = false;
    try {
      try {
        for await (const chunk of source) {
          hash.update(chunk);
          size += chunk.byteLength;
          await fh.write(chunk);
        }
        await fh.datasync();
      } finally {
        await fh.close();
      }
      const digest = `${alg}:${hash.digest("hex")}`;
      if (expected?.digest !== undefined && expected.digest !== digest) {
        throw new BerthError("internal_error", `blob digest mismatch: expected ${expected.digest}, got ${digest}`);
      }
      const target = this.blobPath(digest);
      await mkdir(join(target, ".."), { recursive: true });
      // Same digest means same bytes, so replacing a concurrent writer's copy is harmless.
      await rename(tmp, target);
      renamed = true;
      return { digest, size };
    } finally {
      if (!renamed) await rm(tmp, { force: true });
    }
  }

  /** Reads a whole blob and checks its digest; for manifests and configs, not layers. */
  async readBlob(digest: string): Promise<Buffer> {
    let data: Buffer;
    try {
      data = await readFile(this.blobPath(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new NotFound(`blob ${digest}`);
      throw e;
    }
    const actual = hashOf(digest, data);
    if (actual !== digest) throw new BerthError("internal_error", `blob ${digest} in ${this.dir} is corrupt (content hashes to ${actual})`);
    return data;
  }

  /** Streams a blob (or the inclusive byte range [start, end]); not digest-checked. */
  openBlob(digest: string, range?: { start: number; end: number }): Readable {
    return createReadStream(this.blobPath(digest), range);
  }

  async readIndex(): Promise<ImageIndex> {
    return JSON.parse(await readFile(join(this.dir, "index.json"), "utf8")) as ImageIndex;
  }

  /**
   * Stores a manifest blob and lists it in index.json, tagged `tag` when given (an
   * earlier manifest with the same tag loses the tag, as a registry tag would move).
   */
  async writeManifest(manifest: Uint8Array | string, opts: { tag?: string; mediaType?: string; platform?: Descriptor["platform"] } = {}): Promise<Descriptor> {
    const { digest, size } = await this.writeBlob(manifest);
    const desc: Descriptor = { mediaType: opts.mediaType ?? MEDIA_TYPE_MANIFEST, digest, size };
    if (opts.tag !== undefined) {
      assertTag(opts.tag);
      desc.annotations = { [ANNOTATION_REF_NAME]: opts.tag };
    }
    if (opts.platform) desc.platform = opts.platform;
    await this.#updateIndex((index) => {
      const others = index.manifests.filter((m) =>
        opts.tag === undefined ? !(m.digest === digest && m.annotations?.[ANNOTATION_REF_NAME] === undefined) : m.annotations?.[ANNOTATION_REF_NAME] !== opts.tag,
      );
      return { ...index, manifests: [...others, desc] };
    });
    return desc;
  }

  /** The index.json descriptor tagged `tag`; NotFound if none. */
  async resolve(tag: string): Promise<Descriptor> {
    const index = await this.readIndex();
    const found = index.manifests.find((m) => m.annotations?.[ANNOTATION_REF_NAME] === tag);
    if (!found) throw new NotFound(`image tag ${tag}`);
    return found;
  }

  #updateIndex(change: (index: ImageIndex) => ImageIndex): Promise<void> {
    const run = this.#indexQueue.then(async () => this.#writeIndex(change(await this.readIndex())));
    this.#indexQueue = run.catch(() => undefined);
    return run;
  }

  async #writeIndex(index: ImageIndex): Promise<void> {
    const tmp = join(this.dir, `.index.json.${randomUUID()}`);
    await writeFile(tmp, JSON.stringify(index));
    await rename(tmp, join(this.dir, "index.json"));
  }
}

const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Throws Invalid unless `tag` is a valid distribution-spec tag. */
export function assertTag(tag: string): void {
  if (!TAG_RE.test(tag)) throw new Invalid(`not a valid image tag: ${JSON.stringify(tag)} (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/** The runtime part of an image config (image-spec config.md, `config`). */
export interface ImageRuntimeConfig {
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  /** "8080/tcp" keys; a plain list is accepted and normalized to the spec's object form. */
  ExposedPorts?: Record<string, Record<string, never>> | string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface BuildImageOptions {
  layers: LayerDescriptor[];
  config: ImageRuntimeConfig;
  /** Tag written to index.json; omit to store the image untagged. */
  tag?: string;
  /** Image creation time; fixed by default so identical inputs give an identical config digest. */
  created?: Date;
  /** One entry per layer; defaults to `created_by: "berth"` with the layer's title annotation as comment. */
  history?: HistoryEntry[];
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

export interface OciManifest {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE_MANIFEST;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface BuiltImage {
  manifestDigest: string;
  configDigest: string;
  manifest: OciManifest;
}

/** Same default as the CNB lifecycle: a fixed date keeps rebuilds reproducible. */
const DEFAULT_CREATED = new Date(DEFAULT_MTIME * 1000);

/**
 * Writes the image config and manifest for `layers` (already stored in `layout`) and
 * lists the manifest in index.json. linux/amd64 only.
 */
export async function buildImage(layout: OciLayout, opts: BuildImageOptions): Promise<BuiltImage> {
  if (opts.tag !== undefined) assertTag(opts.tag);
  for (const l of opts.layers) {
    assertDigest(l.digest);
    assertDigest(l.diffId);
    const size = await layout.blobSize(l.digest);
    if (size !== l.size) throw new Invalid(`layer ${l.digest}: descriptor says ${l.size} bytes, the stored blob has ${size}`);
  }
  if (opts.history && opts.history.filter((h) => !h.empty_layer).length !== opts.layers.length) {
    throw new Invalid(`history has ${opts.history.filter((h) => !h.empty_layer).length} non-empty entries for ${opts.layers.length} layers`);
  }
  const created = (opts.created ?? DEFAULT_CREATED).toISOString().replace(/\.000Z$/, "Z");
  const c = opts.config;
  for (const e of c.Env ?? []) {
    if (!e.includes("=") || e.startsWith("=")) throw new Invalid(`image Env entries must be NAME=value, got ${JSON.stringify(e)}`);
  }
  const exposed = Array.isArray(c.ExposedPorts) ? Object.fromEntries(c.ExposedPorts.map((p) => [p.includes("/") ? p : `${p}/tcp`, {}])) : c.ExposedPorts;
  // Fixed key order, undefined keys dropped by JSON.stringify: the config bytes are a function of the inputs.
  const runtime = {
    User: c.User,
    ExposedPorts: exposed,
    Env: c.Env,
    Entrypoint: c.Entrypoint,
    Cmd: c.Cmd,
    WorkingDir: c.WorkingDir,
    Labels: c.Labels,
  };
  const imageConfig = {
    created,
    architecture: "amd64",
    os: "linux",
    config: runtime,
    rootfs: { type: "layers", diff_ids: opts.layers.map((l) => l.diffId) },
    history:
      opts.history ??
      opts.layers.map((l) => {
        const title = l.annotations?.["org.opencontainers.image.title"];
        return title === undefined ? { created, created_by: "berth" } : { created, created_by: "berth", comment: title };
      }),
  };
  const configRef = await layout.writeBlob(JSON.stringify(imageConfig));
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: { mediaType: MEDIA_TYPE_CONFIG, digest: configRef.digest, size: configRef.size },
    layers: opts.layers.map((l) => {
      const d: Descriptor = { mediaType: l.mediaType, digest: l.digest, size: l.size };
      if (l.annotations && Object.keys(l.annotations).length > 0) d.annotations = l.annotations;
      return d;
    }),
  };
  if (opts.annotations && Object.keys(opts.annotations).length > 0) manifest.annotations = opts.annotations;
  const desc = await layout.writeManifest(JSON.stringify(manifest), {
    ...(opts.tag === undefined ? {} : { tag: opts.tag }),
    platform: { architecture: "amd64", os: "linux" },
  });
  return { manifestDigest: desc.digest, configDigest: configRef.digest, manifest };
}
