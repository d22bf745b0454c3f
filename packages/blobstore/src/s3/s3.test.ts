/**
 * The S3 adapter against a real radosgw (test/harness/radosgw.ts): the test of record.
 */
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { BerthError, NotFound, Unavailable } from "@berth/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StartedRadosgw, startRadosgw } from "../../../../test/harness/radosgw.ts";
import { blobStoreContract } from "../contract.ts";
import { createS3BlobStore } from "./index.ts";
import { presignUrl } from "./sigv4.ts";

let rgw: StartedRadosgw;

beforeAll(async () => {
  rgw = await startRadosgw();
  console.info(`radosgw ready in ${rgw.startupMs} ms at ${rgw.endpoint}`);
}, 120_000);

afterAll(async () => {
  await rgw?.stop();
});

const storeFor = (r: StartedRadosgw, bucket = r.bucket) =>
  createS3BlobStore({
    endpoint: r.endpoint,
    region: r.region,
    bucket,
    forcePathStyle: true,
    credentials: { accessKeyId: r.accessKeyId, secretAccessKey: r.secretAccessKey },
  });

blobStoreContract("s3 (radosgw)", () => storeFor(rgw), { signsUrls: true });

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

describe("s3 blob store errors", () => {
  it("reports Unavailable, not an empty list, when the endpoint is down", async () => {
    const store = createS3BlobStore({
      endpoint: `http://127.0.0.1:${await closedPort()}`,
      region: "us-east-1",
      bucket: "berth-test",
      forcePathStyle: true,
      credentials: { accessKeyId: "x", secretAccessKey: "y" },
      maxAttempts: 1,
    });
    const list = async () => {
      for await (const _ of store.list("")) return;
    };
    await expect(list()).rejects.toBeInstanceOf(Unavailable);
    await expect(store.head("k")).rejects.toBeInstanceOf(Unavailable);
    await expect(store.get("k")).rejects.toBeInstanceOf(Unavailable);
    await expect(store.put("k", Buffer.from("x"))).rejects.toBeInstanceOf(Unavailable);
    await expect(store.delete("k")).rejects.toBeInstanceOf(Unavailable);
  });

  it("reports Unavailable for a missing bucket and NotFound only for a missing key", async () => {
    const store = storeFor(rgw, "no-such-bucket-here");
    await expect(store.get("k")).rejects.toBeInstanceOf(Unavailable);
    const list = async () => {
      for await (const _ of store.list("")) return;
    };
    await expect(list()).rejects.toBeInstanceOf(Unavailable);
    await expect(storeFor(rgw).get("no/such/key")).rejects.toBeInstanceOf(NotFound);
  });

  it("reports wrong credentials as a platform error, not as a missing object", async () => {
    const store = createS3BlobStore({
      endpoint: rgw.endpoint,
      region: rgw.region,
      bucket: rgw.bucket,
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: "wrong" },
    });
    const err = await store.get("k").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).not.toBeInstanceOf(NotFound);
    expect((err as BerthError).userFault).toBe(false);
  });

  it("aborts the multipart upload when a part fails", { timeout: 60_000 }, async () => {
    // The body fails after two parts went up; no upload may be left in progress.
    const store = storeFor(rgw);
    const { Readable } = await import("node:stream");
    const body = Readable.from(
      (async function* () {
        yield Buffer.alloc(17 * 1024 * 1024, 1);
        throw new Error("client went away");
      })(),
    );
    await expect(store.put("aborted/upload", body)).rejects.toThrow("client went away");
    const url = presignUrl({
      method: "GET",
      url: new URL(`${rgw.endpoint}/${rgw.bucket}?uploads`),
      region: rgw.region,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      expiresInSec: 60,
      now: new Date(),
    });
    const res = await fetch(url);
    const xml = await res.text();
    expect(res.status, xml).toBe(200);
    expect(xml).not.toContain("aborted/upload");
  });
});
