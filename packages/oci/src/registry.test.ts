import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRegistry, type StartedRegistry } from "../../../test/harness/registry.ts";
import { writeLayer, type LayerDescriptor } from "./layer.ts";
import { buildImage, OciLayout } from "./layout.ts";
import { fetchBlob, parseChallenge, pullManifest, pushImage, type FetchLike } from "./registry.ts";
import { tarDirectory } from "./tar.ts";

const run = promisify(execFile);

let tmp: string;
let layout: OciLayout;
const layers: Record<string, LayerDescriptor> = {};
const runtimeConfig = { Env: ["PORT=5000"], Entrypoint: ["/app/bin/web"], WorkingDir: "/app", User: "1000:1000", ExposedPorts: ["5000/tcp"] };

/** A layer from a directory holding `files`. */
async function layer(name: string, files: Record<string, string | Buffer>): Promise<LayerDescriptor> {
  const src = join(tmp, "src", name);
  await mkdir(src, { recursive: true });
  for (const [f, content] of Object.entries(files)) await writeFile(join(src, f), content);
  return writeLayer(layout, tarDirectory(src, { prefix: `layers/${name}/`, uid: 1000, gid: 1000 }));
}

/** Records every request the client makes. */
function recording(): { fetch: FetchLike; calls: { method: string; path: string; status: number }[] } {
  const calls: { method: string; path: string; status: number }[] = [];
  return {
    calls,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      calls.push({ method: init.method ?? "GET", path: new URL(input).pathname, status: res.status });
      return res;
    },
  };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "berth-registry-test-"));
  layout = await OciLayout.open(join(tmp, "layout"));
  layers.base = await layer("base", { "runtime.bin": randomBytes(150_000) });
  layers.deps = await layer("deps", { "deps.txt": "left-pad@1.0.0\n" });
  layers.app = await layer("app", { "server.js": "console.log(1)\n" });
  layers.app2 = await layer("app", { "server.js": "console.log(2)\n" });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("pushImage against a real registry", () => {
  let registry: StartedRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it("pushes an image skopeo can inspect and copy back, then re-pushes only the changed layer", async () => {
    const v1 = await buildImage(layout, { layers: [layers.base!, layers.deps!, layers.app!], config: runtimeConfig, tag: "v1" });
    const target = { registry: registry.host, repository: "team/app", insecure: true };

    const first = await pushImage(layout, v1.manifestDigest, { ...target, tag: "v1" });
    const manifestSize = (await layout.readBlob(v1.manifestDigest)).length;
    expect(first).toEqual({
      reference: `${registry.host}/team/app@${v1.manifestDigest}`,
      digest: v1.manifestDigest,
      tag: "v1",
      uploadedBlobs: [layers.base!.digest, layers.deps!.digest, layers.app!.digest, v1.configDigest],
      skippedBlobs: [],
      mountedBlobs: [],
      uploadedBytes: layers.base!.size + layers.deps!.size + layers.app!.size + v1.manifest.config.size + manifestSize,
    });

    const { stdout } = await run("skopeo", ["inspect", "--tls-verify=false", `docker://${registry.host}/team/app:v1`]);
    const inspected = JSON.parse(stdout);
    expect(inspected.Digest).toBe(v1.manifestDigest);
    expect(inspected.Layers).toEqual(v1.manifest.layers.map((l) => l.digest));
    expect(inspected.Os).toBe("linux");
    expect(inspected.Architecture).toBe("amd64");

    const copyDir = join(tmp, "copied");
    await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${registry.host}/team/app:v1`, `oci:${copyDir}:v1`]);
    const copied = await OciLayout.open(copyDir);
    expect((await copied.resolve("v1")).digest).toBe(v1.manifestDigest);
    expect((await copied.readBlob(layers.base!.digest)).equals(await readFile(layout.blobPath(layers.base!.digest)))).toBe(true);

    // v2 shares base and deps; only the app layer, the config and the manifest go up.
    const v2 = await buildImage(layout, { layers: [layers.base!, layers.deps!, layers.app2!], config: runtimeConfig, tag: "v2" });
    const rec = recording();
    const second = await pushImage(layout, v2.manifestDigest, { ...target, tag: "v2", fetch: rec.fetch });
    const manifest2Size = (await layout.readBlob(v2.manifestDigest)).length;
    expect(second.uploadedBlobs).toEqual([layers.app2!.digest, v2.configDigest]);
    expect(second.skippedBlobs).toEqual([layers.base!.digest, layers.deps!.digest]);
    expect(second.uploadedBytes).toBe(layers.app2!.size + v2.manifest.config.size + manifest2Size);
    expect(rec.calls.filter((c) => c.method === "PUT").map((c) => c.path)).toEqual([
      expect.stringMatching(/^\/v2\/team\/app\/blobs\/uploads\//),
      expect.stringMatching(/^\/v2\/team\/app\/blobs\/uploads\//),
      "/v2/team/app/manifests/v2",
    ]);

    // Pushing the same image again sends only the manifest.
    const third = await pushImage(layout, v2.manifestDigest, { ...target, tag: "v2" });
    expect(third.uploadedBlobs).toEqual([]);
    expect(third.uploadedBytes).toBe(manifest2Size);

    const pulled = await pullManifest(target, "v2");
    expect(pulled.digest).toBe(v2.manifestDigest);
    expect(pulled.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect((await fetchBlob(target, v2.configDigest)).length).toBe(v2.manifest.config.size);
  });

  it("uploads big blobs in PATCH chunks", async () => {
    const big = await layer("big", { "blob.bin": randomBytes(700_000) });
    const img = await buildImage(layout, { layers: [big], config: runtimeConfig });
    const rec = recording();
    const res = await pushImage(layout, img.manifestDigest, {
      registry: registry.host,
      repository: "team/chunked",
      insecure: true,
      chunkThreshold: 256 * 1024,
      chunkSize: 256 * 1024,
      fetch: rec.fetch,
    });
    expect(res.uploadedBlobs).toEqual([big.digest, img.configDigest]);
    expect(rec.calls.filter((c) => c.method === "PATCH")).toHaveLength(Math.ceil(big.size / (256 * 1024)));
    expect(rec.calls.every((c) => c.status < 400 || (c.method === "HEAD" && c.status === 404))).toBe(true);
    const back = await fetchBlob({ registry: registry.host, repository: "team/chunked", insecure: true }, big.digest);
    expect(back.equals(await readFile(layout.blobPath(big.digest)))).toBe(true);
  });

  it("mounts shared blobs from another repository instead of uploading them", async () => {
    const v1 = await buildImage(layout, { layers: [layers.base!, layers.deps!, layers.app!], config: runtimeConfig });
    const res = await pushImage(layout, v1.manifestDigest, { registry: registry.host, repository: "team/fork", insecure: true, tag: "latest", mountFrom: "team/app" });
    expect(res.mountedBlobs).toEqual([layers.base!.digest, layers.deps!.digest, layers.app!.digest, v1.configDigest]);
    expect(res.uploadedBlobs).toEqual([]);
    expect((await pullManifest({ registry: registry.host, repository: "team/fork", insecure: true }, "latest")).digest).toBe(v1.manifestDigest);
  });

  it("maps missing things and bad names to typed errors", async () => {
    const target = { registry: registry.host, repository: "team/nothing", insecure: true };
    await expect(pullManifest(target, "nope")).rejects.toMatchObject({ id: "not_found" });
    await expect(pullManifest({ ...target, repository: "Team/Upper" }, "v1")).rejects.toMatchObject({ id: "invalid_params" });

    // A blob neither in the layout nor in the registry: the upload session is opened, then given up.
    const partial = await OciLayout.open(join(tmp, "partial"));
    const src = join(tmp, "src", "partial");
    await mkdir(src, { recursive: true });
    await writeFile(join(src, "only-here"), randomBytes(1000));
    const lost = await writeLayer(partial, tarDirectory(src, { prefix: "app/" }));
    const img = await buildImage(partial, { layers: [lost], config: runtimeConfig });
    await rm(partial.blobPath(lost.digest));
    await expect(pushImage(partial, img.manifestDigest, { ...target, tag: "v1" })).rejects.toMatchObject({
      id: "internal_error",
      message: expect.stringMatching(/is neither in .* nor in/),
    });
  });

  it("goes through Basic auth in front of the registry", async () => {
    // A Basic-auth proxy in front of the real registry: the registry's htpasswd auth wants a
    // bcrypt file, and this exercises the same challenge without a bcrypt implementation.
    const [upHost, upPort] = registry.host.split(":");
    const expected = "Basic " + Buffer.from("alice:s3cret").toString("base64");
    const proxy: Server = createServer((req, res) => {
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="berth-test"', "content-type": "application/json" });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
      const up = httpRequest({ host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: req.headers }, (ur) => {
        const headers = { ...ur.headers };
        // Locations are absolute URLs of the registry: point them back at the proxy.
        if (headers.location) headers.location = headers.location.replace(registry.host, `127.0.0.1:${(proxy.address() as AddressInfo).port}`);
        res.writeHead(ur.statusCode ?? 502, headers);
        ur.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    try {
      const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const img = await buildImage(layout, { layers: [layers.deps!], config: runtimeConfig });
      const target = { registry: host, repository: "team/basic", insecure: true, tag: "v1" };
      const ok = await pushImage(layout, img.manifestDigest, { ...target, credentials: { username: "alice", password: "s3cret" } });
      expect(ok.uploadedBlobs).toEqual([layers.deps!.digest, img.configDigest]);
      await expect(pushImage(layout, img.manifestDigest, target)).rejects.toMatchObject({ id: "unauthorized", message: expect.stringMatching(/requires credentials/) });
      await expect(pushImage(layout, img.manifestDigest, { ...target, credentials: { username: "alice", password: "wrong" } })).rejects.toMatchObject({
        id: "unauthorized",
        message: expect.stringMatching(/rejected the credentials of alice/),
      });
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});

describe("pushImage against a token-auth registry", () => {
  let registry: StartedRegistry;
  beforeAll(async () => {
    registry = await startRegistry({ auth: "token" });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it("fetches a bearer token from the realm and pushes", async () => {
    const img = await buildImage(layout, { layers: [layers.base!, layers.app!], config: runtimeConfig });
    const target = { registry: registry.host, repository: "team/secure", insecure: true, credentials: registry.credentials! };
    const before = registry.tokensIssued();
    const res = await pushImage(layout, img.manifestDigest, { ...target, tag: "v1" });
    expect(res.uploadedBlobs).toHaveLength(3);
    // One token for the whole push: it is cached, and asked for with push+pull up front.
    expect(registry.tokensIssued() - before).toBe(1);

    const { stdout } = await run("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--creds",
      `${registry.credentials!.username}:${registry.credentials!.password}`,
      `docker://${registry.host}/team/secure:v1`,
    ]);
    expect(JSON.parse(stdout).Digest).toBe(img.manifestDigest);

    // Mounting needs pull on the source repository in the same token.
    const mounted = await pushImage(layout, img.manifestDigest, { ...target, repository: "team/secure-copy", mountFrom: "team/secure", tag: "v1" });
    expect(mounted.mountedBlobs).toHaveLength(3);

    const reader = { ...target, credentials: registry.readOnlyCredentials! };
    expect((await pullManifest(reader, "v1")).digest).toBe(img.manifestDigest);
  });

  it("reports missing, wrong and insufficient credentials clearly", async () => {
    const img = await buildImage(layout, { layers: [layers.deps!], config: runtimeConfig });
    const target = { registry: registry.host, repository: "team/secure2", insecure: true, tag: "v1" };
    await expect(pushImage(layout, img.manifestDigest, target)).rejects.toMatchObject({
      id: "unauthorized",
      message: expect.stringMatching(/requires credentials/),
    });
    await expect(pushImage(layout, img.manifestDigest, { ...target, credentials: { username: "pusher", password: "wrong" } })).rejects.toMatchObject({
      id: "unauthorized",
      message: expect.stringMatching(/rejected the credentials of pusher/),
    });
    await expect(pushImage(layout, img.manifestDigest, { ...target, credentials: registry.readOnlyCredentials! })).rejects.toMatchObject({
      id: "forbidden",
      message: expect.stringMatching(/denied .*push/),
    });
  });
});

describe("registry errors", () => {
  it("reports a registry that is down as Unavailable, not the user's fault", async () => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const img = await buildImage(layout, { layers: [layers.deps!], config: runtimeConfig });
    const err = await pushImage(layout, img.manifestDigest, { registry: `127.0.0.1:${port}`, repository: "team/app", insecure: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ id: "unavailable", userFault: false, message: expect.stringMatching(/unreachable: ECONNREFUSED/) });
  });

  it("parses challenges with quoted commas", () => {
    expect(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual({
      scheme: "bearer",
      params: { realm: "https://auth.example/token", service: "registry.example", scope: "repository:a/b:pull,push" },
    });
    expect(parseChallenge('Basic realm="x"')).toEqual({ scheme: "basic", params: { realm: "x" } });
    expect(parseChallenge(null)).toBeUndefined();
  });
});
