/** Helpers shared by the local runtime's test files: temp dirs, app dirs, OCI layouts. */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import type { ImageRef } from "../port.ts";

const temps: string[] = [];

export async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

/** For afterAll. */
export async function removeTemps(): Promise<void> {
  for (const d of temps.splice(0)) await fs.rm(d, { recursive: true, force: true });
}

/** The dyno user (65534) must be able to read the app: mkdtemp makes 0700 dirs. */
export async function makeApp(files: Record<string, string>): Promise<ImageRef> {
  const dir = await tempDir("berth-app-");
  await fs.chmod(dir, 0o755);
  for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(dir, name), text, { mode: 0o644 });
  return { kind: "dir", dir };
}

export interface TarEntry {
  name: string;
  body?: string | Buffer;
  type?: "file" | "directory" | "symlink" | "link";
  mode?: number;
  linkname?: string;
}

export async function tarGz(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const header = { name: e.name, type: e.type ?? "file", mode: e.mode ?? (e.type === "directory" ? 0o755 : 0o644), linkname: e.linkname };
    if (header.type === "file") pack.entry(header, e.body ?? "");
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks), { level: 1 });
}

export function sha(b: Buffer | string): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

/** Adds an image of `layers` (gzip tars, lowest first) to the layout in `dir`; returns its manifest digest. */
export async function writeLayout(dir: string, layers: Buffer[], env: string[]): Promise<string> {
  const blobs = path.join(dir, "blobs", "sha256");
  await fs.mkdir(blobs, { recursive: true });
  const put = async (b: Buffer | string) => {
    const d = sha(b);
    await fs.writeFile(path.join(blobs, d.slice(7)), b);
    return { digest: d, size: Buffer.byteLength(b) };
  };
  const config = JSON.stringify({ architecture: "amd64", os: "linux", config: { Env: env }, rootfs: { type: "layers", diff_ids: [] } });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...(await put(config)) },
    layers: await Promise.all(layers.map(async (l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...(await put(l)) }))),
  });
  const m = await put(manifest);
  await fs.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const indexFile = path.join(dir, "index.json");
  const index = JSON.parse(await fs.readFile(indexFile, "utf8").catch(() => `{"schemaVersion":2,"manifests":[]}`)) as { manifests: unknown[] };
  index.manifests.push({ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m });
  await fs.writeFile(indexFile, JSON.stringify(index));
  return m.digest;
}
