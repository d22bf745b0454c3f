/**
 * The cluster the k8s tests run on: infra/cluster/up.sh's, found through its env
 * file (or KUBECONFIG, BERTH_CLUSTER_REGISTRY, BERTH_CLUSTER_BASE_IMAGE).
 */
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { OciLayout, buildImage, pushImage, tarDirectory, writeLayer } from "@berth/oci";
import type { ImageRef } from "@berth/runtime";

const run = promisify(execFile);

export const STATE = process.env.BERTH_CLUSTER_STATE ?? "/tmp/berth-cluster";
export const KUBECONFIG = process.env.KUBECONFIG ?? join(STATE, "admin.kubeconfig");
export const REGISTRY = process.env.BERTH_CLUSTER_REGISTRY ?? "127.0.0.1:5100";
export const BASE_IMAGE = process.env.BERTH_CLUSTER_BASE_IMAGE ?? `${REGISTRY}/berth/base:local`;
/** kubectl built by up.sh (cached per version), else whatever is on PATH. */
export const KUBECTL = process.env.KUBECTL ?? "kubectl";

/** kubectl against the test cluster; throws with its stderr on failure. */
export async function kubectl(args: string[], input?: string): Promise<string> {
  const env = { ...process.env, KUBECONFIG };
  if (input === undefined) {
    const r = await run(KUBECTL, args, { env, maxBuffer: 16 * 1024 * 1024 });
    return r.stdout;
  }
  return new Promise((resolve, reject) => {
    const child = execFile(KUBECTL, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr, stdout }));
      else resolve(stdout);
    });
    child.stdin!.end(input);
  });
}

/** An image of `files` under /workspace (as the builder lays apps out), pushed by digest. */
export async function pushAppImage(files: Record<string, string>, repository = "berth/contract-app"): Promise<ImageRef> {
  const dir = await mkdtemp(join(tmpdir(), "berth-k8s-img-"));
  try {
    const app = join(dir, "app");
    await mkdir(app);
    for (const [name, text] of Object.entries(files)) await writeFile(join(app, name), text, { mode: 0o644 });
    const layout = await OciLayout.open(join(dir, "layout"));
    const layer = await writeLayer(layout, tarDirectory(app, { prefix: "workspace/" }));
    const built = await buildImage(layout, {
      layers: [layer],
      config: { Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace"], WorkingDir: "/workspace", User: "65534:65534" },
      tag: "contract",
    });
    const pushed = await pushImage(layout, built.manifestDigest, { registry: REGISTRY, repository, tag: "contract", insecure: true });
    return { kind: "registry", reference: pushed.reference, digest: pushed.digest };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
