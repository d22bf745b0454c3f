import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

const run = promisify(execFile);

/** Where each app's bare repository lives, and how a fresh one is set up. */
export class Repos {
  readonly root: string;
  readonly #maxPushBytes: number;
  readonly #nodeBinary: string;
  constructor(opts: { root: string; maxPushBytes: number; nodeBinary: string }) {
    this.root = opts.root;
    this.#maxPushBytes = opts.maxPushBytes;
    this.#nodeBinary = opts.nodeBinary;
  }

  /** Repositories are named by app id, so renaming an app keeps its history. */
  dirName(appId: string): string {
    return `${appId}.git`;
  }

  async ensure(appId: string): Promise<string> {
    const dir = join(this.root, this.dirName(appId));
    if (existsSync(join(dir, "HEAD"))) return dir;
    await mkdir(this.root, { recursive: true });
    await run("git", ["init", "--bare", "--quiet", "--initial-branch=main", dir]);
    const settings: [string, string][] = [
      ["receive.maxInputSize", String(this.#maxPushBytes)],
      ["receive.denyDeletes", "true"],
      ["receive.fsckObjects", "true"],
      ["http.receivepack", "true"],
      ["core.hooksPath", join(dir, "hooks")],
      ["gc.auto", "0"],
    ];
    for (const [k, v] of settings) await run("git", ["config", "--file", join(dir, "config"), k, v]);
    const hook = fileURLToPath(new URL("./pre-receive.ts", import.meta.url));
    await writeFile(join(dir, "hooks", "pre-receive"), `#!/bin/sh\nexec "${this.#nodeBinary}" "${hook}"\n`);
    await chmod(join(dir, "hooks", "pre-receive"), 0o755);
    return dir;
  }
}
