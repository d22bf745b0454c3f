import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { BerthError } from "@berth/core";
import { build, detect, type LifecycleOptions, type Order } from "./lifecycle.ts";
import { launchEnv } from "./launch-env.ts";
import { spawnExec, bwrapExec, bwrapAvailable, type ExecRequest } from "./exec.ts";

let root: string;
let bps: string;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), "berth-lc-"));
  bps = path.join(root, "bps");
  await fs.mkdir(path.join(root, "workspace"), { recursive: true });
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** A fake buildpack made of shell scripts. */
async function bp(id: string, o: { detect: string; build?: string; detects?: string; clearEnv?: boolean }): Promise<string> {
  const dir = path.join(bps, id.replace(/\//g, "_"));
  await fs.mkdir(path.join(dir, "bin"), { recursive: true });
  const clear = o.clearEnv ? "clear-env = true\n" : "";
  await fs.writeFile(path.join(dir, "buildpack.toml"), `api = "0.10"\n[buildpack]\nid = "${id}"\nversion = "1.2.3"\nname = "${id} pack"\n${clear}[metadata]\ndetects = "${o.detects ?? "something"}"\n`);
  await fs.writeFile(path.join(dir, "bin", "detect"), `#!/bin/sh\nplan="$CNB_BUILD_PLAN_PATH"\n${o.detect}\n`, { mode: 0o755 });
  await fs.writeFile(path.join(dir, "bin", "build"), `#!/bin/sh\nset -e\nL="$CNB_LAYERS_DIR"\n${o.build ?? "true"}\n`, { mode: 0o755 });
  return dir;
}

function opts(order: Order, lines: string[] = []): LifecycleOptions {
  return {
    appDir: path.join(root, "workspace"),
    layersDir: path.join(root, "layers"),
    platformDir: path.join(root, "platform"),
    cacheDir: path.join(root, "cache"),
    order,
    onLine: (l) => lines.push(l),
  };
}

const app = (f: string, body = "") => fs.writeFile(path.join(root, "workspace", f), body);

/** Config vars as the builder writes them: <platform>/env/<NAME>. */
async function configVars(o: LifecycleOptions, vars: Record<string, string>): Promise<void> {
  await fs.mkdir(path.join(o.platformDir, "env"), { recursive: true });
  for (const [k, v] of Object.entries(vars)) await fs.writeFile(path.join(o.platformDir, "env", k), v);
}

describe("detect", () => {
  it("picks the first group whose required buildpacks pass, dropping failed optional ones", async () => {
    const a = await bp("t/a", { detect: "[ -f a.txt ] || exit 100" });
    const b = await bp("t/b", { detect: "exit 0" });
    const c = await bp("t/c", { detect: "exit 100" });
    await app("b.txt");
    const res = await detect(opts([[{ dir: a }], [{ dir: c, optional: true }, { dir: b }]]));
    expect(res.group.map((g) => g.bp.id)).toEqual(["t/b"]);
  });

  it("resolves the build plan: requires must be provided, provides must be required", async () => {
    const provider = await bp("t/runtime", { detect: `printf '[[provides]]\\nname = "rt"\\n' > "$plan"` });
    const needer = await bp("t/app", { detect: `printf '[[requires]]\\nname = "rt"\\n[requires.metadata]\\nversion = "9"\\n' > "$plan"` });
    const orphan = await bp("t/orphan", { detect: `printf '[[requires]]\\nname = "nothing-provides-this"\\n' > "$plan"` });
    // A provider alone leaves "rt" unrequired; an orphan require is unprovided: both groups fail.
    const res = await detect(opts([[{ dir: provider }], [{ dir: orphan }], [{ dir: provider, optional: true }, { dir: needer }]]));
    expect(res.group.map((g) => g.bp.id)).toEqual(["t/runtime", "t/app"]);
    expect(res.group[0]!.plan).toEqual([{ name: "rt", metadata: { version: "9" } }]);
  });

  it("uses [[or]] alternatives", async () => {
    const x = await bp("t/x", { detect: `printf '[[requires]]\\nname = "missing"\\n[[or]]\\n[[or.provides]]\\nname = "ok"\\n[[or.requires]]\\nname = "ok"\\n' > "$plan"` });
    const res = await detect(opts([[{ dir: x }]]));
    expect(res.group[0]!.plan.map((e) => e.name)).toEqual(["ok"]);
  });

  it("fails with every buildpack tried and what it looks for", async () => {
    const a = await bp("t/node", { detect: "exit 100", detects: "package.json" });
    const b = await bp("t/py", { detect: "exit 100", detects: "requirements.txt or pyproject.toml" });
    const err = await detect(opts([[{ dir: a }], [{ dir: b }], [{ dir: a, optional: true }, { dir: b }]])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).id).toBe("build_failed");
    expect((err as Error).message).toBe(
      "No buildpack could build this app. Tried, in order:\n" +
        "  - t/node pack (t/node): looks for package.json\n" +
        "  - t/py pack (t/py): looks for requirements.txt or pyproject.toml\n" +
        "Add one of those files, or set a buildpack for the app.",
    );
  });

  it("treats a detect error (not 0 or 100) as a build failure", async () => {
    const a = await bp("t/broken", { detect: "echo boom; exit 3" });
    const lines: string[] = [];
    await expect(detect(opts([[{ dir: a }]], lines))).rejects.toThrow(/Detection by the t\/broken pack buildpack \(t\/broken\) exited with code 3/);
    expect(lines).toContain("       boom");
  });
});

describe("build", () => {
  it("gives buildpacks a scrubbed environment: no host variables, and the platform's trust variables win over config vars", async () => {
    process.env.BERTH_TEST_HOST_SECRET = "host-secret";
    try {
      const a = await bp("t/env", { detect: "exit 0", build: `env | sort > "$CNB_APP_DIR/env.out"` });
      const o = opts([[{ dir: a }]]);
      await configVars(o, { NODE_EXTRA_CA_CERTS: "/app-supplied.pem" });
      await build({ ...o, exec: spawnExec({ passEnv: { NODE_EXTRA_CA_CERTS: "/ca.pem" } }) });
      const env = await fs.readFile(path.join(o.appDir, "env.out"), "utf8");
      expect(env).not.toMatch(/host-secret|BERTH_TEST_HOST_SECRET|app-supplied/);
      expect(env).toMatch(/^NODE_EXTRA_CA_CERTS=\/ca.pem$/m);
      expect(env).toMatch(/^CNB_LAYERS_DIR=.*layers\/t_env$/m);
    } finally {
      delete process.env.BERTH_TEST_HOST_SECRET;
    }
  });

  it("sets config vars in bin/detect and bin/build, over earlier layers' env, except for a clear-env buildpack", async () => {
    // Detection itself depends on the variable: each passes only if it sees what it should.
    const layer = await bp("t/layer", { detect: "exit 0", build: `mkdir -p "$L/tool/env"; printf layer > "$L/tool/env/MODE"; printf '[types]\\nbuild = true\\n' > "$L/tool.toml"` });
    const echo = await bp("t/echo", { detect: `[ "$GREETING" = "hello world" ] || exit 100`, build: `echo "build sees $GREETING, mode $MODE"` });
    const clear = await bp("t/clear", {
      clearEnv: true,
      detect: `[ -z "\${GREETING+set}" ] || exit 100`,
      build: `echo "clear-env sees [\${GREETING:-}] and mode $MODE; the file says $(cat "$CNB_PLATFORM_DIR/env/GREETING")"`,
    });
    const lines: string[] = [];
    const o = opts([[{ dir: layer }, { dir: echo }, { dir: clear }]], lines);
    await configVars(o, { GREETING: "hello world", MODE: "user" });
    const res = await build(o);
    expect(res.buildpacks.map((b) => b.id)).toEqual(["t/layer", "t/echo", "t/clear"]);
    expect(lines).toContain("       build sees hello world, mode user");
    // clear-env: no user variables, but the environment built from earlier layers stays.
    expect(lines).toContain("       clear-env sees [] and mode layer; the file says hello world");
    expect(lines.some((l) => l.includes("Not set in the build environment"))).toBe(false);
  });

  it("does not let config vars replace the names the lifecycle sets (CNB_*, PATH, HOME, LD_*), and says so once", async () => {
    const a = await bp("t/reserved", { detect: "exit 0", build: `echo "layers $CNB_LAYERS_DIR"; echo "home $HOME"; echo "path $PATH"; echo "preload [\${LD_PRELOAD:-}]"; echo "kept $KEPT"` });
    const b = await bp("t/second", { detect: "exit 0", build: "true" });
    const lines: string[] = [];
    const o = opts([[{ dir: a }, { dir: b }]], lines);
    await configVars(o, { CNB_LAYERS_DIR: "/elsewhere", PATH: "/nowhere", HOME: "/root", LD_PRELOAD: "/workspace/evil.so", KEPT: "yes", BINARY: "a\0b" });
    await build(o);
    expect(lines).toContain(`       layers ${path.join(root, "layers", "t_reserved")}`);
    expect(lines.find((l) => l.startsWith("       home "))).not.toBe("       home /root");
    expect(lines.find((l) => l.startsWith("       path "))).toMatch(/^ {7}path \/.*:\/usr\/local\/bin:\/usr\/bin:\/bin$/);
    expect(lines).toContain("       preload []");
    expect(lines).toContain("       kept yes");
    // Names only, never values; one line for the whole build, whatever the number of buildpacks.
    const notice = lines.filter((l) => l.includes("Not set in the build environment"));
    expect(notice).toEqual([
      "       Not set in the build environment: BINARY (contains a NUL byte), CNB_LAYERS_DIR (set by the platform), HOME (set by the platform), LD_PRELOAD (set by the platform), PATH (set by the platform); buildpacks can read them in $CNB_PLATFORM_DIR/env.",
    ]);
  });

  it("collects processes from launch.toml, the Procfile winning, and streams Heroku-style output", async () => {
    const a = await bp("t/web", {
      detect: "exit 0",
      build: `echo "-----> Doing things"; echo "detail line"
cat > "$L/launch.toml" <<'EOF'
[[processes]]
type = "web"
command = "node server.js"
default = true

[[processes]]
type = "worker"
command = ["node", "worker.js"]
args = ["--queue", "a b"]
EOF`,
    });
    await app("Procfile", "web: node other.js --port $PORT\n# comment\nclock: node clock.js\n");
    const lines: string[] = [];
    const res = await build(opts([[{ dir: a }]], lines));
    expect(res.processes).toEqual([
      { type: "web", command: "node other.js --port $PORT", default: true },
      { type: "worker", command: "node worker.js --queue 'a b'", default: false },
      { type: "clock", command: "node clock.js", default: false },
    ]);
    expect(lines).toContain("-----> Building on the t/web pack buildpack");
    expect(lines).toContain("-----> Doing things");
    expect(lines).toContain("       detail line");
    expect(res.buildpacks).toEqual([{ id: "t/web", version: "1.2.3" }]);
  });

  it("restores cache layers with their metadata, reports reuse, and saves them", async () => {
    // The buildpack installs "deps" unless the cached layer's digest matches the lockfile.
    const a = await bp("t/deps", {
      detect: "exit 0",
      build: `digest=$(cksum < lock.txt | cut -d' ' -f1)
if grep -q "digest = \\"$digest\\"" "$L/deps.toml" 2>/dev/null; then
  echo "reusing deps"
  printf '[types]\\nlaunch = true\\ncache = true\\n[metadata]\\ndigest = "%s"\\n' "$digest" > "$L/deps.toml"
else
  echo "installing deps"
  rm -rf "$L/deps"; mkdir -p "$L/deps/bin" "$L/deps/env"
  echo installed > "$L/deps/stuff"; printf '#!/bin/sh\\necho tool\\n' > "$L/deps/bin/tool"; chmod +x "$L/deps/bin/tool"
  printf production > "$L/deps/env/MODE.default"; printf /extra > "$L/deps/env/EXTRA_PATH.prepend"; printf : > "$L/deps/env/EXTRA_PATH.delim"
  printf '[types]\\nlaunch = true\\ncache = true\\n[metadata]\\ndigest = "%s"\\n' "$digest" > "$L/deps.toml"
fi
mkdir -p "$L/tmp"; printf '[types]\\nbuild = true\\n' > "$L/tmp.toml"`,
    });
    await app("lock.txt", "v1");
    let lines: string[] = [];
    const first = await build(opts([[{ dir: a }]], lines));
    expect(lines).toContain("       installing deps");
    const deps1 = first.layers.find((l) => l.name === "deps")!;
    expect(deps1).toMatchObject({ bpId: "t/deps", launch: true, build: false, cache: true, reused: false });
    expect(first.layers.find((l) => l.name === "tmp")).toMatchObject({ build: true, cache: false, reused: false });

    // Second build of the same app: fresh layers dir, restored from cache.
    await fs.rm(path.join(root, "layers"), { recursive: true });
    lines = [];
    const second = await build(opts([[{ dir: a }]], lines));
    expect(lines).toContain("       reusing deps");
    expect(lines).not.toContain("       installing deps");
    const deps2 = second.layers.find((l) => l.name === "deps")!;
    expect(deps2.reused).toBe(true);
    expect(deps2.metadata.digest).toBe(deps1.metadata.digest);
    expect(await fs.readFile(path.join(deps2.dir, "stuff"), "utf8")).toBe("installed\n");

    // Launch env: layer bin on PATH, env files applied over config vars, paths mapped to the image.
    const env = launchEnv(second, { configVars: { MODE: "staging", EXTRA_PATH: "/user" } });
    expect(env.PATH).toBe("/layers/t_deps/deps/bin:/usr/local/bin:/usr/bin:/bin");
    expect(env.MODE).toBe("staging");
    expect(env.EXTRA_PATH).toBe("/extra:/user");
    expect(launchEnv(second).MODE).toBe("production");

    // A lockfile change invalidates it.
    await fs.rm(path.join(root, "layers"), { recursive: true });
    await app("lock.txt", "v2");
    lines = [];
    const third = await build(opts([[{ dir: a }]], lines));
    expect(lines).toContain("       installing deps");
    expect(third.layers.find((l) => l.name === "deps")!.reused).toBe(false);
  });

  it("fails with build_failed when bin/build fails, and keeps untouched cache", async () => {
    const a = await bp("t/fail", { detect: "exit 0", build: `echo "npm ERR! something"; exit 7` });
    const lines: string[] = [];
    const err = await build({ ...opts([[{ dir: a }]], lines), tmpDir: root }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).message).toBe("The t/fail pack buildpack (t/fail) failed: it exited with code 7.");
    expect(lines).toContain("       npm ERR! something");
    expect((await fs.readdir(root)).filter((f) => f.startsWith("berth-lifecycle-"))).toEqual([]);
  });

  it("after a failed build, hands back the cached layers it did not change and drops those it did", async () => {
    // Group: t/a caches `edited` and `emptied`, t/b caches `later`. The second build changes
    // `edited` in place and empties `emptied` in t/a, then t/a fails, so t/b never runs.
    const a = await bp("t/a", {
      detect: "exit 0",
      build: `if [ -d "$L/edited" ]; then echo more >> "$L/edited/file"; rm "$L/emptied/file"; exit 3; fi
mkdir -p "$L/edited" "$L/emptied"; echo one > "$L/edited/file"; echo one > "$L/emptied/file"
for n in edited emptied; do printf '[types]\ncache = true\n[metadata]\nv = "1"\n' > "$L/$n.toml"; done`,
    });
    const b = await bp("t/b", { detect: "exit 0", build: `mkdir -p "$L/later"; echo kept > "$L/later/file"; printf '[types]\ncache = true\n' > "$L/later.toml"` });
    const first = await build(opts([[{ dir: a }, { dir: b }]]));
    expect(first.layers.map((l) => [l.name, l.dir.startsWith(path.join(root, "cache"))])).toEqual([["edited", true], ["emptied", true], ["later", true]]);
    // The layers dir still reaches them (a symlink where each was).
    expect(await fs.readFile(path.join(root, "layers", "t_b", "later", "file"), "utf8")).toBe("kept\n");

    await fs.rm(path.join(root, "layers"), { recursive: true });
    const lines: string[] = [];
    const err = await build(opts([[{ dir: a }, { dir: b }]], lines)).catch((e: unknown) => e);
    expect((err as BerthError).message).toBe("The t/a pack buildpack (t/a) failed: it exited with code 3.");
    expect(lines.some((l) => l.includes("Building on the t/b pack buildpack"))).toBe(false);
    expect((await fs.readdir(path.join(root, "cache", "t_a"))).sort()).toEqual([]);
    expect((await fs.readdir(path.join(root, "cache", "t_b"))).sort()).toEqual(["later", "later.toml"]);
    expect(await fs.readFile(path.join(root, "cache", "t_b", "later", "file"), "utf8")).toBe("kept\n");
  });

  it("kills a build that runs past its timeout", async () => {
    const a = await bp("t/slow", { detect: "exit 0", build: "sleep 30" });
    const started = Date.now();
    await expect(build({ ...opts([[{ dir: a }]]), buildTimeoutMs: 500 })).rejects.toThrow(/timed out/);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("bubblewrap sandbox", async () => {
  const available = await bwrapAvailable();
  it.skipIf(!available)("runs buildpacks as an unprivileged user seeing only its mounts at image paths", async () => {
    const a = await bp("t/box", {
      detect: "exit 0",
      build: `id -u > id.out; pwd > pwd.out; echo "$CNB_LAYERS_DIR" > layers.out
ls / > root.out
if ls ${JSON.stringify(root)} >/dev/null 2>&1; then echo visible; else echo hidden; fi > host.out
if touch /usr/x 2>/dev/null; then echo writable; else echo readonly; fi > usr.out
mkdir -p "$L/l/bin"; printf '[types]\\nlaunch = true\\n' > "$L/l.toml"
node -e 'console.log(process.version)' > node.out`,
    });
    const res = await build({ ...opts([[{ dir: a }]]), exec: bwrapExec({ memoryBytes: 512 * 1024 * 1024, pids: 256 }) });
    const read = (f: string) => fs.readFile(path.join(root, "workspace", f), "utf8").then((s) => s.trim());
    expect(await read("id.out")).toBe("65534");
    expect(await read("pwd.out")).toBe("/workspace");
    expect(await read("layers.out")).toBe("/layers/t_box");
    expect(await read("host.out")).toBe("hidden");
    expect(await read("usr.out")).toBe("readonly");
    expect(await read("node.out")).toBe(process.version);
    expect(res.layers.map((l) => l.name)).toEqual(["l"]);
    expect(launchEnv(res).PATH).toBe("/layers/t_box/l/bin:/usr/local/bin:/usr/bin:/bin");
  });

  it.skipIf(!available)("hands config vars to the sandboxed buildpack byte for byte (quotes, newlines, $)", async () => {
    const tricky = `it's "$HOME" \\ \`x\`\nsecond line\n`;
    const a = await bp("t/boxenv", { detect: `[ "$GREETING" = hi ] || exit 100`, build: `printf '%s' "$TRICKY" > tricky.out; env > env.out` });
    const o = opts([[{ dir: a }]]);
    await configVars(o, { GREETING: "hi", TRICKY: tricky, "BAD-NAME": "x" });
    await build({ ...o, exec: bwrapExec() });
    expect(await fs.readFile(path.join(root, "workspace", "tricky.out"), "utf8")).toBe(tricky);
    // Only what the lifecycle set, the config vars and the shell's PWD: nothing of the host or of bwrap.
    const names = (await fs.readFile(path.join(root, "workspace", "env.out"), "utf8")).split("\n").filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l)).map((l) => l.slice(0, l.indexOf("=")));
    expect(names.filter((n) => !n.startsWith("CNB_")).sort()).toEqual(["GREETING", "HOME", "LANG", "PATH", "PWD", "TRICKY"]);
  });

  /** A run of a host command with no mounts, for the cgroup tests. */
  const hostRun = (argv: string[]): ExecRequest => ({ argv, cwd: "/", env: { PATH: "/usr/bin:/bin" }, mounts: [], timeoutMs: 20_000, onLine: () => {} });
  const BUSY_LOOP = `i=0; while [ "$i" -lt 60000 ]; do i=$((i + 1)); done`;

  it.skipIf(!available)("holds a build to its CPU limit (CFS quota): a busy loop under 0.1 CPUs is throttled", async () => {
    const run = (cpus: number | undefined) =>
      // A fixed amount of work (~0.1-0.3 s of CPU), not a wall-clock span: on a busy
      // machine it still wants far more than its 10 ms in some 100 ms period.
      bwrapExec(cpus === undefined ? {} : { cpus }).run(hostRun(["/bin/sh", "-c", `${BUSY_LOOP}; echo done`]));
    const limited = await run(0.1);
    expect(limited.code).toBe(0);
    expect(limited.cpu?.throttledPeriods).toBeGreaterThan(0);
    expect(limited.cpu?.throttledMs).toBeGreaterThan(0);
    expect(limited.cpu?.usageMs).toBeGreaterThan(0);
    expect(limited.unenforced).toBeUndefined();
    // Without a limit there is no CPU cgroup to report on.
    expect((await run(undefined)).cpu).toBeUndefined();
  });

  it.skipIf(!available)("the plain-process fallback gets the same cgroup limits", async () => {
    const res = await spawnExec({ cpus: 0.1 }).run(hostRun(["/bin/sh", "-c", BUSY_LOOP]));
    expect(res.code).toBe(0);
    expect(res.cpu?.throttledPeriods).toBeGreaterThan(0);
  });

  it.skipIf(!available)("reports limits it cannot enforce (no writable controller) instead of dropping them", async () => {
    const res = await bwrapExec({ memoryBytes: 256 * 1024 * 1024, pids: 64, cpus: 1, cgroupRoot: path.join(root, "no-cgroups-here") }).run(hostRun(["/bin/true"]));
    expect(res.code).toBe(0);
    expect(res.unenforced).toEqual(["memory", "pids", "cpu"]);
    expect(res.cpu).toBeUndefined();
  });
});
