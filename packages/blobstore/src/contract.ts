/**
 * The contract every BlobStore keeps, as a vitest suite. Each implementation's test
 * file calls blobStoreContract() with a factory for a real store. Tests write under
 * their own random prefix, so the store may be shared and need not start empty.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { Invalid, NotFound } from "@berth/core";
import { beforeAll, describe, expect, it } from "vitest";
import type { BlobStore } from "./port.ts";

export interface ContractOptions {
  /** Whether signedUrl() must return working URLs (true) or null (false). */
  signsUrls: boolean;
}

const MiB = 1024 * 1024;

/** Reads a stream to the end. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

function sha256(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex");
}

/** A stream of buf in uneven chunks, as network bodies arrive. */
function chunked(buf: Buffer, sizes = [1, 1000, 65_536, 7, 300_000]): Readable {
  return Readable.from(
    (function* () {
      for (let off = 0, i = 0; off < buf.length; i++) {
        const n = sizes[i % sizes.length]!;
        yield buf.subarray(off, off + n);
        off += n;
      }
    })(),
  );
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out;
}

/** Runs fn over items with at most n in flight. */
async function inParallel<T>(items: T[], n: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function blobStoreContract(
  name: string,
  makeStore: () => BlobStore | Promise<BlobStore>,
  options: ContractOptions,
): void {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    /** A fresh key prefix for one test. */
    const scope = () => `contract-${randomUUID().slice(0, 8)}/`;

    beforeAll(async () => {
      store = await makeStore();
    });

    it("round-trips a Buffer and reports size and sha256", async () => {
      const key = `${scope()}buf.bin`;
      const body = randomBytes(100_000);
      const res = await store.put(key, body, { contentType: "application/octet-stream" });
      expect(res.size).toBe(body.length);
      if (res.sha256 !== undefined) expect(res.sha256).toBe(sha256(body));
      expect(await readAll(await store.get(key))).toEqual(body);
      expect(await store.head(key)).toEqual({ size: body.length });
    });

    it("round-trips a stream", async () => {
      const key = `${scope()}stream.bin`;
      const body = randomBytes(1 * MiB + 17);
      const res = await store.put(key, chunked(body));
      expect(res.size).toBe(body.length);
      if (res.sha256 !== undefined) expect(res.sha256).toBe(sha256(body));
      expect(sha256(await readAll(await store.get(key)))).toBe(sha256(body));
    });

    it("stores 0-byte objects from a Buffer and from a stream", async () => {
      const s = scope();
      expect((await store.put(`${s}empty-buf`, Buffer.alloc(0))).size).toBe(0);
      expect((await store.put(`${s}empty-stream`, Readable.from([]))).size).toBe(0);
      for (const key of [`${s}empty-buf`, `${s}empty-stream`]) {
        expect(await store.head(key)).toEqual({ size: 0 });
        expect((await readAll(await store.get(key))).length).toBe(0);
      }
    });

    it("round-trips 20 MiB as a stream and as a Buffer", { timeout: 120_000 }, async () => {
      const s = scope();
      const body = randomBytes(20 * MiB);
      const digest = sha256(body);
      const fromStream = await store.put(`${s}big-stream`, chunked(body, [64 * 1024, 1_000_003]));
      expect(fromStream.size).toBe(body.length);
      if (fromStream.sha256 !== undefined) expect(fromStream.sha256).toBe(digest);
      expect((await store.put(`${s}big-buf`, body)).size).toBe(body.length);
      for (const key of [`${s}big-stream`, `${s}big-buf`]) {
        expect(await store.head(key)).toEqual({ size: body.length });
        expect(sha256(await readAll(await store.get(key)))).toBe(digest);
        await store.delete(key);
      }
    });

    it("keeps the previous object when the body stream fails", { timeout: 60_000 }, async () => {
      const key = `${scope()}atomic`;
      await store.put(key, Buffer.from("old"));
      for (const failAfter of [1000, 9 * MiB]) {
        const failing = Readable.from(
          (async function* () {
            yield randomBytes(failAfter);
            throw new Error("client went away");
          })(),
        );
        await expect(store.put(key, failing)).rejects.toThrow("client went away");
        expect((await readAll(await store.get(key))).toString()).toBe("old");
      }
    });

    it("head returns null and get throws NotFound for a missing key", async () => {
      const key = `${scope()}missing`;
      expect(await store.head(key)).toBeNull();
      await expect(store.get(key)).rejects.toBeInstanceOf(NotFound);
    });

    it("overwrites", async () => {
      const key = `${scope()}over`;
      await store.put(key, Buffer.from("first version, longer"));
      await store.put(key, Buffer.from("second"));
      expect((await readAll(await store.get(key))).toString()).toBe("second");
      expect(await store.head(key)).toEqual({ size: 6 });
    });

    it("deletes idempotently", async () => {
      const s = scope();
      await store.put(`${s}d/x`, Buffer.from("x"));
      await store.delete(`${s}d/x`);
      expect(await store.head(`${s}d/x`)).toBeNull();
      await expect(store.get(`${s}d/x`)).rejects.toBeInstanceOf(NotFound);
      await store.delete(`${s}d/x`);
      await store.delete(`${s}never/was`);
      expect(await collect(store.list(s))).toEqual([]);
    });

    it("lists by prefix in byte order, a key and its 'directory' side by side", async () => {
      const s = scope();
      const keys = [`${s}p/a`, `${s}p/b`, `${s}p/b/c`, `${s}p/b/d`, `${s}p/bz`, `${s}p-x`, `${s}q/a`, `${s}p/ü n+%~.txt`];
      await inParallel(keys, 8, (k) => store.put(k, Buffer.from(k)));
      const sorted = (ks: string[]) => [...ks].sort(byteOrder);
      expect(await collect(store.list(s))).toEqual(sorted(keys));
      expect(await collect(store.list(`${s}p/`))).toEqual(sorted(keys.filter((k) => k.startsWith(`${s}p/`))));
      expect(await collect(store.list(`${s}p/b`))).toEqual([`${s}p/b`, `${s}p/b/c`, `${s}p/b/d`, `${s}p/bz`]);
      expect(await collect(store.list(`${s}p`))).toEqual(sorted(keys.filter((k) => !k.startsWith(`${s}q`))));
      expect(await collect(store.list(`${s}nothing/`))).toEqual([]);
      expect((await readAll(await store.get(`${s}p/b`))).toString()).toBe(`${s}p/b`);
      expect((await readAll(await store.get(`${s}p/b/c`))).toString()).toBe(`${s}p/b/c`);
    });

    it("lists more than 1000 keys (past one S3 page)", { timeout: 120_000 }, async () => {
      const s = scope();
      const keys = Array.from({ length: 1100 }, (_, i) => `${s}k/${String(i).padStart(4, "0")}`);
      await inParallel(keys, 16, (k) => store.put(k, Buffer.from("x")));
      const listed = await collect(store.list(s));
      expect(listed.length).toBe(1100);
      expect(listed).toEqual(keys);
      await inParallel(keys, 16, (k) => store.delete(k));
      expect(await collect(store.list(s))).toEqual([]);
    });

    it("rejects invalid keys with Invalid before any I/O", async () => {
      const bad = ["", "../x", "a/../b", "a/./b", "/abs", "a\0b", "a//b", "a/", "x".repeat(1025), "\ud800"];
      for (const key of bad) {
        await expect(store.put(key, Buffer.from("x")), JSON.stringify(key)).rejects.toBeInstanceOf(Invalid);
        await expect(store.get(key)).rejects.toBeInstanceOf(Invalid);
        await expect(store.head(key)).rejects.toBeInstanceOf(Invalid);
        await expect(store.delete(key)).rejects.toBeInstanceOf(Invalid);
        await expect(store.signedUrl(key, "GET", 60)).rejects.toBeInstanceOf(Invalid);
      }
      for (const prefix of ["/abs", "a\0"]) {
        await expect(collect(store.list(prefix))).rejects.toBeInstanceOf(Invalid);
      }
      // 1024 bytes is the limit, counted in UTF-8 bytes.
      const s = scope();
      const longest = s + "é".repeat((1024 - s.length) / 2);
      expect(Buffer.byteLength(longest)).toBeLessThanOrEqual(1024);
      await expect(store.put(`${longest}é`, Buffer.from("x"))).rejects.toBeInstanceOf(Invalid);
      await expect(store.signedUrl("k", "GET", 0)).rejects.toBeInstanceOf(Invalid);
    });

    if (!options.signsUrls) {
      it("returns null from signedUrl (the platform serves the bytes)", async () => {
        expect(await store.signedUrl(`${scope()}x`, "GET", 60)).toBeNull();
        expect(await store.signedUrl(`${scope()}x`, "PUT", 60)).toBeNull();
      });
      return;
    }

    it("signs URLs that work with plain fetch", async () => {
      const s = scope();
      const key = `${s}signed/ü n+%~=&?.txt`;
      const putUrl = await store.signedUrl(key, "PUT", 300);
      expect(putUrl).toMatch(/^https?:\/\//);
      const body = randomBytes(70_000);
      const put = await fetch(putUrl!, { method: "PUT", body });
      expect(put.status, await put.text()).toBe(200);
      expect(await readAll(await store.get(key))).toEqual(body);

      await store.put(`${s}typed.txt`, Buffer.from("hello"), { contentType: "text/plain" });
      const got = await fetch((await store.signedUrl(`${s}typed.txt`, "GET", 300))!);
      expect(got.status).toBe(200);
      expect(got.headers.get("content-type")).toBe("text/plain");
      expect(await got.text()).toBe("hello");

      const missing = await fetch((await store.signedUrl(`${s}missing`, "GET", 300))!);
      expect(missing.status).toBe(404);
      await missing.arrayBuffer();
    });

    it("refuses a tampered signed URL", async () => {
      const key = `${scope()}tampered`;
      await store.put(key, Buffer.from("secret"));
      const url = new URL((await store.signedUrl(key, "GET", 300))!);
      const sig = url.searchParams.get("X-Amz-Signature") ?? "";
      url.searchParams.set("X-Amz-Signature", sig.replace(/^./, (c) => (c === "0" ? "1" : "0")));
      const res = await fetch(url);
      expect(res.status).toBe(403);
      await res.arrayBuffer();
    });
  });
}

