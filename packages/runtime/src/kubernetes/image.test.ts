import { Invalid } from "@berth/core";
import { describe, expect, it } from "vitest";
import { RunImages, mergeConfigs, parseReference, registryReferenceOf } from "./image.ts";
import { fakeRegistry } from "./testing.ts";

describe("references", () => {
  it("parses host, repository and tag or digest", () => {
    expect(parseReference("127.0.0.1:5100/berth/base:local", "x")).toEqual({ host: "127.0.0.1:5100", repository: "berth/base", reference: "local" });
    expect(parseReference(`r.example/berth/app@sha256:${"a".repeat(64)}`, "x")).toEqual({ host: "r.example", repository: "berth/app", reference: `sha256:${"a".repeat(64)}` });
    expect(parseReference("berth/base", "127.0.0.1:5100")).toEqual({ host: "127.0.0.1:5100", repository: "berth/base", reference: "latest" });
  });

  it("takes the registry reference from what the builder records, and refuses images without one", () => {
    expect(registryReferenceOf({ kind: "registry", reference: "r/x@sha256:1", digest: "sha256:1" })).toBe("r/x@sha256:1");
    expect(registryReferenceOf({ kind: "layout", dir: "/d", digest: "sha256:1", registryReference: "r/y@sha256:1" } as never)).toBe("r/y@sha256:1");
    expect(() => registryReferenceOf({ kind: "layout", dir: "/d", digest: "sha256:1" })).toThrow(Invalid);
    expect(() => registryReferenceOf({ kind: "dir", dir: "/d" })).toThrow(/builder must push/);
  });
});

describe("mergeConfigs", () => {
  it("lets the app's launch env win and keeps the base's PATH entries after the app's", () => {
    const merged = mergeConfigs(
      { os: "linux", architecture: "amd64", config: { Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "NODE_VERSION=24"] }, rootfs: { type: "layers", diff_ids: ["sha256:b1"] } },
      { config: { Env: ["PATH=/layers/node/bin:/usr/local/bin", "HOME=/workspace"], WorkingDir: "/workspace", User: "65534:65534" }, rootfs: { type: "layers", diff_ids: ["sha256:a1", "sha256:a2"] } },
      "sha256:base",
      "sha256:app",
    );
    expect(merged.config!.Env).toEqual(["PATH=/layers/node/bin:/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "NODE_VERSION=24"]);
    expect(merged.rootfs.diff_ids).toEqual(["sha256:b1", "sha256:a1", "sha256:a2"]);
    expect(merged.config).toMatchObject({ WorkingDir: "/workspace", User: "65534:65534", Labels: { "dev.berth.base": "sha256:base", "dev.berth.app-image": "sha256:app" } });
  });
});

describe("RunImages", () => {
  const setup = () => {
    const reg = fakeRegistry();
    reg.image("berth/base", ["base-os", "base-node"], { os: "linux", architecture: "amd64", config: { Env: ["PATH=/usr/local/bin:/usr/bin:/bin"] } }, "local");
    const app = reg.image("berth/app-1", ["app-layers", "app-workspace"], { config: { Env: ["PATH=/layers/x/bin:/usr/local/bin"], WorkingDir: "/workspace" } }, "build-1");
    const images = new RunImages({ host: reg.host, insecure: true }, `${reg.host}/berth/base:local`, reg.fetch);
    return { reg, app, images };
  };

  it("writes a manifest of the base's layers then the app's, into the app's repository, by digest", async () => {
    const { reg, app, images } = setup();
    const run = await images.resolve({ kind: "registry", reference: app.reference, digest: app.digest });
    const digest = run.reference.split("@")[1]!;
    expect(run.reference).toMatch(new RegExp(`^${reg.host}/berth/app-1@sha256:[0-9a-f]{64}$`));
    expect(run.appImage).toBe(app.reference);
    const m = reg.manifest("berth/app-1", digest);
    const base = reg.manifest("berth/base", "local");
    const appM = reg.manifest("berth/app-1", app.digest);
    expect(m.layers.map((l: { digest: string }) => l.digest)).toEqual([...base.layers, ...appM.layers].map((l: { digest: string }) => l.digest));
    // Base layers are mounted across repositories, not uploaded.
    expect(reg.requests.filter((r) => r.includes("mount="))).toHaveLength(2);
    expect(reg.requests.filter((r) => r.startsWith("PUT") && r.includes("/blobs/uploads/"))).toHaveLength(1);
    for (const l of base.layers) expect(reg.blob("berth/app-1", l.digest)).toBeDefined();
    const config = JSON.parse(reg.blob("berth/app-1", m.config.digest)!.toString());
    expect(config.config.Env).toEqual(["PATH=/layers/x/bin:/usr/local/bin:/usr/bin:/bin"]);
    expect(config.rootfs.diff_ids).toHaveLength(4);
  });

  it("makes the same run image for the same pair, once per process", async () => {
    const { reg, app, images } = setup();
    const ref = { kind: "registry" as const, reference: app.reference, digest: app.digest };
    const a = await images.resolve(ref);
    const requests = reg.requests.length;
    const b = await images.resolve(ref);
    expect(b).toEqual(a);
    expect(reg.requests.length - requests).toBe(1); // only the base tag is resolved again
    const again = await new RunImages({ host: reg.host, insecure: true }, `${reg.host}/berth/base:local`, reg.fetch).resolve(ref);
    expect(again.reference).toBe(a.reference);
  });

  it("refuses images by tag or from another registry", async () => {
    const { images } = setup();
    await expect(images.resolve({ kind: "registry", reference: "registry.test:5000/berth/app-1:build-1", digest: "" })).rejects.toThrow(/by digest/);
    await expect(images.resolve({ kind: "registry", reference: `elsewhere.io/berth/app-1@sha256:${"1".repeat(64)}`, digest: "" })).rejects.toThrow(/not in the registry/);
  });
});
