/**
 * The bench's app: a small Node.js web server with one dependency, so builds run a
 * real `npm ci` and a rebuild has a lockfile to find unchanged. The dependency is a
 * tarball inside the repository (file: spec), so installing it needs no network.
 * A one-line change is the `VERSION` line of server.js; the body says `hello v<N>`.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort, pollHttp, run, stopChild } from "./proc.ts";

export const body = (version: number): string => `hello v${version}`;

export function serverJs(version: number): string {
  return `const http = require("node:http");
const greet = require("greet");
const VERSION = ${version};
http.createServer((req, res) => res.end(greet(VERSION))).listen(process.env.PORT);
`;
}

const DEP = "greet";
const DEP_FILE = `vendor/${DEP}-1.0.0.tgz`;

/** Writes the app at version 1 into `dir` (which must exist), with node_modules for running it by hand. */
export async function writeApp(dir: string): Promise<void> {
  const pkgDir = join(dir, ".greet-src", "package");
  await mkdir(join(pkgDir, "lib"), { recursive: true });
  await writeFile(join(pkgDir, "package.json"), JSON.stringify({ name: DEP, version: "1.0.0", main: "index.js", license: "MIT" }, null, 2));
  // A few dozen small modules: something for npm ci to unpack, like a real small dependency.
  const parts = Array.from({ length: 40 }, (_, i) => `part${i}`);
  for (const p of parts) await writeFile(join(pkgDir, "lib", `${p}.js`), `// ${p}\nmodule.exports = ${JSON.stringify("x".repeat(2000))}.length;\n`);
  await writeFile(join(pkgDir, "index.js"), `${parts.map((p) => `require("./lib/${p}.js");`).join("\n")}\nmodule.exports = (v) => "hello v" + v;\n`);
  await mkdir(join(dir, "vendor"), { recursive: true });
  const tgz = join(dir, DEP_FILE);
  await run("tar", ["-czf", tgz, "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@315532801", "-C", join(dir, ".greet-src"), "package"]);
  const integrity = "sha512-" + createHash("sha512").update(await readFile(tgz)).digest("base64");
  // Installed by hand for the baseline (what npm ci would put there), kept out of git.
  await mkdir(join(dir, "node_modules", DEP), { recursive: true });
  await run("tar", ["-xzf", tgz, "-C", join(dir, "node_modules", DEP), "--strip-components=1"]);
  await run("rm", ["-rf", join(dir, ".greet-src")]);

  const pkg = { name: "bench-app", version: "1.0.0", private: true, engines: { node: "24.x" }, scripts: { start: "node server.js" }, dependencies: { [DEP]: `file:${DEP_FILE}` } };
  const lock = {
    name: "bench-app",
    version: "1.0.0",
    lockfileVersion: 3,
    requires: true,
    packages: {
      "": { name: "bench-app", version: "1.0.0", dependencies: { [DEP]: `file:${DEP_FILE}` }, engines: { node: "24.x" } },
      [`node_modules/${DEP}`]: { version: "1.0.0", resolved: `file:${DEP_FILE}`, integrity, license: "MIT" },
    },
  };
  await writeFile(join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
  await writeFile(join(dir, "package-lock.json"), JSON.stringify(lock, null, 2) + "\n");
  await writeFile(join(dir, "server.js"), serverJs(1));
  await writeFile(join(dir, "Procfile"), "web: node server.js\n");
  await writeFile(join(dir, ".gitignore"), "node_modules/\n");
}

/**
 * The baseline for a start: spawn `node server.js` with a PORT and poll until it answers
 * `expect`. Milliseconds from spawn to the first byte of that answer.
 */
export async function startByHand(dir: string, expect: string, timeoutMs = 15_000): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, ["server.js"], { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: String(port) }, stdio: "ignore" });
  try {
    return await pollHttp(port, { ok: (a) => a.status === 200 && a.body === expect, timeoutMs, intervalMs: 2, since: t0 });
  } finally {
    await stopChild(child, 2000);
  }
}

/** git with the harness's environment, a time limit, and no throw: exit code and output. */
export async function git(cwd: string, args: string[], home: string, timeoutMs = 300_000): Promise<{ code: number; out: string }> {
  try {
    const r = await run("git", args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", HOME: home } });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number | string; stdout?: string; stderr?: string; killed?: boolean };
    return { code: typeof err.code === "number" ? err.code : 1, out: `${err.killed ? "(killed: time limit)\n" : ""}${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

export async function commitAll(dir: string, home: string, message: string): Promise<void> {
  for (const args of [["add", "-A"], ["-c", "user.email=bench@example.test", "-c", "user.name=bench", "commit", "-qm", message]]) {
    const r = await git(dir, args, home, 30_000);
    if (r.code !== 0) throw new Error(`git ${args.join(" ")} failed: ${r.out}`);
  }
}
