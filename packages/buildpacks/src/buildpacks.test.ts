/**
 * The shipped buildpacks against the real npm registry and PyPI: each app is built
 * with the lifecycle, then run straight from its layer directories with launchEnv()
 * and asked for a response over HTTP on 127.0.0.1.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { BerthError } from "@berth/core";
import { launchEnv } from "./launch-env.ts";
import { bwrapExec, bwrapAvailable, trustEnv, type Exec } from "./exec.ts";
import { hostExec, writeApp, buildApp as buildWith, runWeb, type Built } from "./testing.ts";

let tmp: string;
let cacheDir: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "berth-bp-"));
  // One cache for all apps here, so the Node.js runtime is downloaded once per version.
  cacheDir = path.join(tmp, "cache");
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const makeApp = (name: string, files: Record<string, string>): Promise<string> => writeApp(path.join(tmp, name, "workspace"), files);
const buildApp = (appDir: string, configVars: Record<string, string> = {}, exec: Exec = hostExec, cache = cacheDir): Promise<Built> => buildWith(appDir, { cacheDir: cache, configVars, exec });

const serverJs = `const http = require("http");
http.createServer((req, res) => res.end("hello from node " + process.version + " " + ${"`${require.resolve.paths ? 'ok' : ''}`"})).listen(process.env.PORT, "127.0.0.1");
`;

describe("shipped buildpacks", () => {
  it("says which buildpacks were tried when none detects", async () => {
    const appDir = await makeApp("empty", { "README.md": "nothing here" });
    const err = await buildApp(appDir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as Error).message).toContain("  - Node.js (berth/nodejs): looks for package.json\n");
    expect((err as Error).message).toContain("  - Python (berth/python): looks for requirements.txt or pyproject.toml\n");
    expect((err as Error).message).toContain("  - Static site (berth/static): looks for static.json, or index.html at the root (without package.json)\n");
    expect((err as Error).message).toContain("  - Procfile (berth/procfile): looks for a Procfile\n");
  });

  it("builds a Procfile-only app with no runtime", async () => {
    const appDir = await makeApp("procfile", { Procfile: "web: sh server.sh\n" });
    const { result } = await buildApp(appDir);
    expect(result.buildpacks.map((b) => b.id)).toEqual(["berth/procfile"]);
    expect(result.processes).toEqual([{ type: "web", command: "sh server.sh", default: true }]);
  });

  it("builds a zero-dependency Node.js app on the node version engines asks for, and runs it", async () => {
    const appDir = await makeApp("node-zero", {
      "package.json": JSON.stringify({ name: "zero", version: "1.0.0", engines: { node: "22.x" }, scripts: { start: "node server.js" } }),
      "package-lock.json": JSON.stringify({ name: "zero", version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name: "zero", version: "1.0.0", engines: { node: "22.x" } } } }),
      "server.js": serverJs,
    });
    const { result, lines, ms } = await buildApp(appDir);
    console.log(`cold Node.js build (downloads node 22.x): ${ms} ms`);
    expect(lines).toContain("-----> Building on the Node.js buildpack");
    expect(lines.some((l) => /^ {7}Downloading and installing node 22\.\d+\.\d+\.\.\.$/.test(l))).toBe(true);
    expect(result.buildpacks.map((b) => b.id)).toEqual(["berth/nodejs"]);
    expect(result.processes).toEqual([{ type: "web", command: "npm start", default: true }]);
    const node = result.layers.find((l) => l.name === "node")!;
    expect(node).toMatchObject({ launch: true, cache: true });
    expect(String(node.metadata.version)).toMatch(/^22\./);
    const res = await runWeb(result);
    expect(res.body).toMatch(new RegExp(`^hello from node v${String(node.metadata.version).replace(/\./g, "\\.")}`));
  });

  let depApp: string;
  it("installs a dependency with npm ci into a node_modules layer", async () => {
    depApp = await makeApp("node-dep", {
      "package.json": JSON.stringify({ name: "dep", version: "1.0.0", engines: { node: "22.x" }, main: "server.js", dependencies: { "is-number": "^7.0.0" } }),
      "package-lock.json": JSON.stringify({
        name: "dep",
        version: "1.0.0",
        lockfileVersion: 3,
        requires: true,
        packages: {
          "": { name: "dep", version: "1.0.0", dependencies: { "is-number": "^7.0.0" }, engines: { node: "22.x" } },
          "node_modules/is-number": {
            version: "7.0.0",
            resolved: "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
            integrity: "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
            license: "MIT",
            engines: { node: ">=0.12.0" },
          },
        },
      }),
      "server.js": `const isNumber = require("is-number");\nrequire("http").createServer((q, r) => r.end("v1 " + isNumber(5))).listen(process.env.PORT, "127.0.0.1");\n`,
    });
    const { result, lines, ms } = await buildApp(depApp);
    console.log(`first Node.js build with one dependency (node cached): ${ms} ms`);
    expect(lines).toContain("       Using cached node " + String(result.layers.find((l) => l.name === "node")!.metadata.version));
    expect(lines).toContain("       Installing dependencies with npm ci (package-lock.json)");
    expect(result.processes).toEqual([{ type: "web", command: "node server.js", default: true }]);
    const mods = result.layers.find((l) => l.name === "node_modules")!;
    expect(mods).toMatchObject({ launch: true, cache: true, reused: false });
    expect((await fs.lstat(path.join(depApp, "node_modules"))).isSymbolicLink()).toBe(true);
    expect(await fs.readlink(path.join(depApp, "node_modules"))).toBe("../layers/berth_nodejs/node_modules/app/node_modules");
    expect((await runWeb(result)).body).toBe("v1 true");
  });

  it("rebuilds after a one-line change reusing node_modules without running npm", async () => {
    const marker = path.join(tmp, "node-dep", "layers", "berth_nodejs", "node_modules", "app", "node_modules", "is-number", "package.json");
    const inodeBefore = (await fs.stat(marker)).ino;
    await fs.writeFile(path.join(depApp, "server.js"), (await fs.readFile(path.join(depApp, "server.js"), "utf8")).replace('"v1 "', '"v2 "'));
    const { result, lines, ms } = await buildApp(depApp);
    console.log(`cached Node.js rebuild (one-line change): ${ms} ms`);
    const mods = result.layers.find((l) => l.name === "node_modules")!;
    expect(mods.reused).toBe(true);
    expect(result.layers.find((l) => l.name === "node")!.reused).toBe(true);
    expect(lines).toContain("       Reusing node_modules (package-lock.json unchanged, node " + String(mods.metadata.node_version) + ")");
    expect(lines.some((l) => /npm ci|added \d+ package/.test(l))).toBe(false);
    // npm ci would have replaced the files; the restored layer is the same directory, moved out of the cache and back.
    expect((await fs.stat(marker)).ino).toBe(inodeBefore);
    // The range's resolution is reused: the registry was asked by the first build moments ago.
    const node = String(result.layers.find((l) => l.name === "node")!.metadata.version);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^ {7}\\S+ is node ${node.replace(/\./g, "\\.")} \\(asked the registry \\d+ s ago\\)$`)));
    expect((await runWeb(result)).body).toBe("v2 true");
  });

  it("keeps the cached node when the registry cannot be reached and it satisfies engines.node", async () => {
    // Another registry: the remembered resolution (for the default one) does not apply, so the registry is asked.
    const { result, lines } = await buildApp(depApp, { NPM_CONFIG_REGISTRY: "http://127.0.0.1:9" });
    const node = String(result.layers.find((l) => l.name === "node")!.metadata.version);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^ !     Could not reach the registry \\(.+\\); keeping node ${node.replace(/\./g, "\\.")}\\.$`)));
    expect(result.layers.find((l) => l.name === "node_modules")!.reused).toBe(true);
    expect((await runWeb(result)).body).toBe("v2 true");
  });

  it("lays node_modules out so that a dependency finds its own hoisted dependencies", async () => {
    // debug requires ms, which npm hoists beside it. Node never looks in a directory named
    // node_modules/node_modules (ancestors named node_modules are skipped), hence the
    // layer's app/node_modules.
    const appDir = await makeApp("node-hoist", {
      "package.json": JSON.stringify({ name: "hoist", version: "1.0.0", engines: { node: "22.x" }, main: "server.js", dependencies: { debug: "^4.3.4" } }),
      // npm install --package-lock-only
      "package-lock.json": JSON.stringify({"name": "hoist", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": {"": {"name": "hoist", "version": "1.0.0", "dependencies": {"debug": "^4.3.4"}, "engines": {"node": "22.x"}}, "node_modules/debug": {"version": "4.4.3", "resolved": "https://registry.npmjs.org/debug/-/debug-4.4.3.tgz", "integrity": "sha512-RGwwWnwQvkVfavKVt22FGLw+xYSdzARwm0ru6DhTVA3umU5hZc28V3kO4stgYryrTlLpuvgI9GiijltAjNbcqA==", "license": "MIT", "dependencies": {"ms": "^2.1.3"}, "engines": {"node": ">=6.0"}, "peerDependenciesMeta": {"supports-color": {"optional": true}}}, "node_modules/ms": {"version": "2.1.3", "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz", "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==", "license": "MIT"}}}),
      "server.js": `const ms = require("debug").humanize;\nrequire("http").createServer((q, r) => r.end("debug says " + ms(90000))).listen(process.env.PORT, "127.0.0.1");\n`,
    });
    const { result } = await buildApp(appDir);
    expect(await fs.readlink(path.join(appDir, "node_modules"))).toBe("../layers/berth_nodejs/node_modules/app/node_modules");
    expect((await runWeb(result)).body).toBe("debug says 2m");
  });

  it("builds the same app inside the bubblewrap sandbox, as uid 65534 at image paths", async (ctx) => {
    if (!(await bwrapAvailable())) ctx.skip();
    const appDir = await makeApp("node-box", {});
    await fs.cp(depApp, appDir, { recursive: true, verbatimSymlinks: true });
    await fs.rm(path.join(appDir, "node_modules"), { force: true });
    // A cache of its own: the lockfile is the same as the unsandboxed builds', so a shared cache would reuse their node_modules.
    const boxCache = await fs.mkdtemp(path.join(path.dirname(appDir), "box-cache-"));
    const { result, lines, ms } = await buildApp(appDir, {}, bwrapExec({ passEnv: trustEnv(process.env), memoryBytes: 2 * 1024 ** 3, pids: 1024 }), boxCache);
    console.log(`sandboxed Node.js build (npm ci inside bubblewrap): ${ms} ms`);
    expect(lines).toContain("       Installing dependencies with npm ci (package-lock.json)");
    expect((await fs.stat(path.join(result.layersDir, "berth_nodejs", "node_modules"))).uid).toBe(65534);
    expect((await runWeb(result)).body).toBe("v2 true");
  });

  it("runs the build script with devDependencies, then launches without them", async () => {
    const appDir = await makeApp("node-build", {
      "package.json": JSON.stringify({ name: "b", version: "1.0.0", engines: { node: "22.x" }, scripts: { build: "node build.js", start: "node server.js" }, devDependencies: { "is-number": "^7.0.0" } }),
      "package-lock.json": JSON.stringify({
        name: "b",
        version: "1.0.0",
        lockfileVersion: 3,
        requires: true,
        packages: {
          "": { name: "b", version: "1.0.0", devDependencies: { "is-number": "^7.0.0" }, engines: { node: "22.x" } },
          "node_modules/is-number": {
            version: "7.0.0",
            resolved: "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
            integrity: "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
            dev: true,
            license: "MIT",
            engines: { node: ">=0.12.0" },
          },
        },
      }),
      "build.js": `require("fs").writeFileSync("dist.txt", "built " + require("is-number")(1) + " " + process.env.NODE_ENV);\n`,
      "server.js": `require("http").createServer((q, r) => { let dev = "absent"; try { require("is-number"); dev = "present"; } catch {} r.end(require("fs").readFileSync("dist.txt", "utf8") + " dev " + dev); }).listen(process.env.PORT, "127.0.0.1");\n`,
    });
    const { result, lines } = await buildApp(appDir);
    expect(lines).toContain("       Running build (npm)");
    expect(result.layers.find((l) => l.name === "node_modules")).toMatchObject({ launch: false, build: true, cache: true });
    expect(result.layers.find((l) => l.name === "node_modules_prod")).toMatchObject({ launch: true, cache: false });
    expect((await runWeb(result)).body).toBe("built true production dev absent");
    // The full tree is cached for the next build script run.
    const again = await buildApp(appDir);
    expect(again.result.layers.find((l) => l.name === "node_modules")!.reused).toBe(true);
    expect((await runWeb(again.result)).body).toBe("built true production dev absent");
  });

  it("builds a Python app with a dependency on Debian's python3, saying what it used instead", async () => {
    const appDir = await makeApp("python", {
      "requirements.txt": "six==1.17.0\n",
      "runtime.txt": "python-3.12.1\n",
      "app.py": `import http.server, os, sys, six
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from python {sys.version.split()[0]} six {six.__version__}".encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`,
    });
    const { result, lines } = await buildApp(appDir);
    expect(result.buildpacks.map((b) => b.id)).toEqual(["berth/python"]);
    expect(lines).toContain(" !     runtime.txt asks for Python 3.12.1, which this stack cannot provide.");
    expect(lines.some((l) => /^ !     Using Python 3\.11\.\d+ \(Debian's python3\) instead\.$/.test(l))).toBe(true);
    expect(result.processes).toEqual([{ type: "web", command: "python3 app.py", default: true }]);
    expect(result.layers.find((l) => l.name === "venv")).toMatchObject({ launch: true, cache: true });
    const res = await runWeb(result);
    expect(res.body).toMatch(/^hello from python 3\.11\.\d+ six 1\.17\.0$/);
    expect(launchEnv(result).VIRTUAL_ENV).toBe("/layers/berth_python/venv");

    const again = await buildApp(appDir);
    expect(again.result.layers.find((l) => l.name === "venv")!.reused).toBe(true);
    expect(again.lines).toContain("       Reusing the virtualenv (requirements.txt unchanged, Python " + String(result.layers.find((l) => l.name === "venv")!.metadata.python_version) + ")");
  });

  it("serves a static site with the built-in server on a Node.js runtime layer", async () => {
    const appDir = await makeApp("static", {
      "index.html": "<h1>hello static</h1>\n",
      "about.html": "about",
      "static.json": JSON.stringify({ clean_urls: true }),
    });
    const { result } = await buildApp(appDir);
    expect(result.buildpacks.map((b) => b.id)).toEqual(["berth/nodejs", "berth/static"]);
    expect(result.processes).toEqual([{ type: "web", command: "berth-static-server", default: true }]);
    expect(result.layers.filter((l) => l.launch).map((l) => `${l.bpId}/${l.name}`)).toEqual(["berth/nodejs/node", "berth/static/server"]);
    expect(launchEnv(result).PATH).toBe("/layers/berth_static/server/bin:/layers/berth_nodejs/node/bin:/usr/local/bin:/usr/bin:/bin");
    const res = await runWeb(result);
    expect(res).toMatchObject({ status: 200, body: "<h1>hello static</h1>\n", type: "text/html; charset=utf-8" });
    expect((await runWeb(result, "/about")).body).toBe("about");
    expect((await runWeb(result, "/static.json")).status).toBe(404);
  });
});
