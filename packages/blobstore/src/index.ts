/** Where Berth keeps bytes: the BlobStore port and its local and S3 implementations. */
import { join } from "node:path";
import type { BerthConfig } from "@berth/core";
import { createLocalBlobStore } from "./local/index.ts";
import type { BlobStore } from "./port.ts";

export type { BlobInfo, BlobStore, PutOptions, PutResult, SignedMethod } from "./port.ts";
export { MAX_KEY_BYTES, validateKey, validatePrefix } from "./port.ts";
export { createLocalBlobStore, type LocalBlobStoreOptions } from "./local/index.ts";
// The S3 store is loaded only when configured: the AWS SDK costs ~25 MB of memory
// in every process that imports it. Import "@berth/blobstore/s3/index" to use it directly.
export type { S3Api, S3BlobStoreOptions } from "./s3/index.ts";

export type BlobStoreConfig = Pick<
  BerthConfig,
  | "BERTH_BLOBSTORE"
  | "BERTH_S3_ENDPOINT"
  | "BERTH_S3_REGION"
  | "BERTH_S3_BUCKET"
  | "BERTH_S3_ACCESS_KEY"
  | "BERTH_S3_SECRET_KEY"
  | "BERTH_S3_FORCE_PATH_STYLE"
  | "dataDir"
>;

/**
 * The blob store the configuration asks for: S3 with BERTH_BLOBSTORE=s3 (loadConfig
 * has checked its keys), else a local store in <dataDir>/blobs. Opens no connection.
 */
export async function openBlobStore(config: BlobStoreConfig): Promise<BlobStore> {
  if (config.BERTH_BLOBSTORE === "s3") {
    const { createS3BlobStore } = await import("./s3/index.ts");
    return createS3BlobStore({
      bucket: config.BERTH_S3_BUCKET ?? "",
      region: config.BERTH_S3_REGION,
      ...(config.BERTH_S3_ENDPOINT ? { endpoint: config.BERTH_S3_ENDPOINT } : {}),
      forcePathStyle: config.BERTH_S3_FORCE_PATH_STYLE,
      ...(config.BERTH_S3_ACCESS_KEY && config.BERTH_S3_SECRET_KEY
        ? { credentials: { accessKeyId: config.BERTH_S3_ACCESS_KEY, secretAccessKey: config.BERTH_S3_SECRET_KEY } }
        : {}),
    });
  }
  return createLocalBlobStore({ root: join(config.dataDir, "blobs") });
}
