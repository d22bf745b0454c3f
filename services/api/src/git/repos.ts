import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

const run = promisify(execFile);

/** Each repository's pre-receive hook: runs pre-receive.sh (sh and curl) from this checkout. */
const HOOK = `#!/bin/sh\nexec /bin/sh "${fileURLToPath(new URL("./pre-receive.sh", import.meta.url))}"\n`;

/** Where each app's bare repository lives, and how a fresh one is set up. */
export class Repos {
  readonly root: string;
  readonly #maxPushBytes: number;
  constructor(opts: { root: string; maxPushBytes: number }) {
    this.root = opts.root;
    this.#maxPushBytes = opts.maxPushBytes;
  }

  /** Repositories are named by app id, so renaming an app keeps its history. */
  dirName(appId: string): string {
    return `${appId}.git`;
  }

  async ensure(appId: string): Promise<string> {
    const dir = join(this.root, this.dirName(appId));
    if (existsSync(join(dir, "HEAD"))) {
      // Repositories made by an older Berth get the current hook on their next push.
      if ((await readFile(join(dir, "hooks", "pre-receive"), "utf8").catch(() => "")) !== HOOK) await this.#writeHook(dir);
      return dir;
    }
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
    await this.#writeHook(dir);
    return dir;
  }

  async #writeHook(dir: string): Promise<void> {
    await mkdir(join(dir, "hooks"), { recursive: true });
    await writeFile(join(dir, "hooks", "pre-receive"), HOOK);
    await chmod(join(dir, "hooks", "pre-receive"), 0o755);
  }
}
