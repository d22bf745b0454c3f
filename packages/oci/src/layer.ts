/**
 * Turns an uncompressed layer tar into a gzip blob in an OCI layout, in one pass:
 * the tar is hashed (diff_id) on its way into gzip, and the gzip output is hashed
 * (blob digest), counted and written to disk as it comes out. Nothing is buffered
 * beyond stream chunks, so layer size does not bound memory.
 *
 * Invariant: Node's gzip header carries mtime 0, no file name and no comment, so the
 * blob digest is a function of the tar bytes and the compression level, for a given
 * zlib build. The diff_id alone is the content identity; the blob digest is what
 * decides whether a push re-uploads, and it is stable across rebuilds on one platform.
 */
import { createHash } from "node:crypto";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip, constants as zlibConstants } from "node:zlib";
import { Invalid } from "@berth/core";
import { MEDIA_TYPE_LAYER_GZIP, type BlobRef, type OciLayout } from "./layout.ts";

export interface LayerDescriptor {
  mediaType: typeof MEDIA_TYPE_LAYER_GZIP;
  /** Digest of the compressed blob. */
  digest: string;
  /** Size of the compressed blob in bytes. */
  size: number;
  /** sha256 of the uncompressed tar: what the image config lists in rootfs.diff_ids. */
  diffId: string;
  annotations?: Record<string, string>;
}

export interface WriteLayerOptions {
  /** gzip level 1–9 (default 6, zlib's default). Changing it changes every blob digest. */
  level?: number;
  /** Descriptor annotations, e.g. org.opencontainers.image.title. */
  annotations?: Record<string, string>;
}

/** Compresses an uncompressed tar stream into `layout` and describes the resulting layer. */
export async function writeLayer(layout: OciLayout, tar: Readable | AsyncIterable<Uint8Array>, opts: WriteLayerOptions = {}): Promise<LayerDescriptor> {
  const level = opts.level ?? zlibConstants.Z_DEFAULT_COMPRESSION;
  if (level !== zlibConstants.Z_DEFAULT_COMPRESSION && !(Number.isInteger(level) && level >= 1 && level <= 9)) {
    throw new Invalid(`gzip level must be 1–9, got ${level}`);
  }
  const diff = createHash("sha256");
  const tee = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      diff.update(chunk);
      cb(null, chunk);
    },
  });
  let blob: BlobRef | undefined;
  await pipeline(tar, tee, createGzip({ level }), async (gz: AsyncIterable<Uint8Array>) => {
    blob = await layout.writeBlobStream(gz);
  });
  if (!blob) throw new Error("unreachable: pipeline finished without writing the blob");
  const desc: LayerDescriptor = { mediaType: MEDIA_TYPE_LAYER_GZIP, digest: blob.digest, size: blob.size, diffId: "sha256:" + diff.digest("hex") };
  if (opts.annotations) desc.annotations = opts.annotations;
  return desc;
}
