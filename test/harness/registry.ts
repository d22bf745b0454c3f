/**
 * A real OCI registry for tests: Debian's `docker-registry` (Distribution 2.8) on
 * 127.0.0.1:<free port> with filesystem storage in a temp dir, one per caller.
 *
 * With `auth: "token"` the registry is configured for bearer-token auth, and a small
 * Node token service (also started here) issues ES256 JWTs signed by a self-made
 * certificate that is the registry's `rootcertbundle`. The JWT header carries the
 * certificate in `x5c`, which Distribution 2.8 verifies against that bundle.
 * Users: `credentials` (pull+push on every repository) and `readOnlyCredentials` (pull only).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, randomBytes, randomUUID, sign, X509Certificate, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface StartedRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  /** Present with auth "token": may pull and push everywhere. */
  credentials?: { username: string; password: string };
  /** Present with auth "token": may only pull. */
  readOnlyCredentials?: { username: string; password: string };
  /** Present with auth "token": how many tokens were issued so far. */
  tokensIssued(): number;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  auth?: "token";
  /** Readiness deadline (default 15 s). */
  timeoutMs?: number;
}

const SERVICE = "berth-test-registry";
const ISSUER = "berth-test-token-issuer";

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<StartedRegistry> {
  await ensureInstalled();
  const dir = await mkdtemp(join(tmpdir(), "berth-registry-"));
  const cleanups: (() => Promise<void>)[] = [async () => rm(dir, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    let token: TokenService | undefined;
    if (opts.auth === "token") {
      token = await startTokenService(dir);
      cleanups.push(() => token!.close());
    }
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = [
      "version: 0.1",
      "log:",
      "  level: error",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "data")}`,
      "  delete:",
      "    enabled: true",
      "  maintenance:",
      "    uploadpurging:",
      "      enabled: false",
      "http:",
      `  addr: ${host}`,
      `  secret: ${randomBytes(16).toString("hex")}`,
      ...(token
        ? ["auth:", "  token:", `    realm: ${token.realm}`, `    service: ${SERVICE}`, `    issuer: ${ISSUER}`, `    rootcertbundle: ${token.certPath}`]
        : []),
    ].join("\n");
    await writeFile(join(dir, "config.yml"), config + "\n");

    // The machine's AWS_CA_BUNDLE makes the registry's s3 driver panic at start.
    const env = { ...process.env };
    delete env.AWS_CA_BUNDLE;
    const child = spawn("docker-registry", ["serve", join(dir, "config.yml")], { env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const collect = (b: Buffer) => {
      output = (output + b.toString()).slice(-8000);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    cleanups.push(() => stopChild(child));

    await waitReady(host, child, () => output, opts.timeoutMs ?? 15_000);
    const started: StartedRegistry = {
      host,
      tokensIssued: () => token?.issued() ?? 0,
      stop: cleanup,
    };
    if (token) {
      started.credentials = token.users.push;
      started.readOnlyCredentials = token.users.pull;
    }
    return started;
  } catch (e) {
    await cleanup();
    throw e;
  }
}

let installChecked: Promise<void> | undefined;

function ensureInstalled(): Promise<void> {
  installChecked ??= (async () => {
    const missing = [];
    for (const bin of ["docker-registry", "skopeo", "umoci", "openssl"]) {
      if (!(await run("sh", ["-c", `command -v ${bin}`]).then(() => true, () => false))) missing.push(bin);
    }
    if (missing.length === 0) return;
    // ensure-deps installs these in CI; this covers a fresh dev machine.
    await run("apt-get", ["-o", "DPkg::Lock::Timeout=600", "install", "-y", "docker-registry", "skopeo", "umoci", "openssl"], { timeout: 600_000 });
  })();
  return installChecked;
}

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function waitReady(host: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: string | undefined;
  child.once("exit", (code, signal) => {
    exited = `exited with ${code ?? signal}`;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`docker-registry ${exited} before it was ready:\n${output()}`);
    try {
      const res = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      // 401 is ready too: the token-auth registry challenges anonymous /v2/.
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`docker-registry on ${host} not ready within ${timeoutMs} ms:\n${output()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

interface TokenService {
  realm: string;
  certPath: string;
  users: { push: { username: string; password: string }; pull: { username: string; password: string } };
  issued(): number;
  close(): Promise<void>;
}

async function startTokenService(dir: string): Promise<TokenService> {
  const keyPath = join(dir, "token.key");
  const certPath = join(dir, "token.crt");
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=berth-test-token-signer",
  ], { timeout: 30_000 });
  const key: KeyObject = createPrivateKey(await readFile(keyPath));
  const certDer = new X509Certificate(await readFile(certPath)).raw.toString("base64");

  const users = {
    push: { username: "pusher", password: randomBytes(12).toString("hex") },
    pull: { username: "reader", password: randomBytes(12).toString("hex") },
  };
  let issued = 0;

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://token");
    const auth = req.headers.authorization ?? "";
    const [user, pass] = auth.startsWith("Basic ") ? Buffer.from(auth.slice(6), "base64").toString().split(":", 2) : [];
    const who = Object.entries(users).find(([, u]) => u.username === user && u.password === pass);
    if (url.pathname !== "/token" || !who) {
      res.writeHead(url.pathname === "/token" ? 401 : 404, { "content-type": "application/json" }).end('{"details":"bad credentials"}');
      return;
    }
    const allowed = who[0] === "push" ? ["pull", "push"] : ["pull"];
    const access = url.searchParams
      .getAll("scope")
      .flatMap((s) => s.split(" "))
      .filter(Boolean)
      .map((s) => {
        // repository:name:actions; names hold no ":" here (no registry ports in repo names).
        const [type = "", name = "", actions = ""] = s.split(":");
        return { type, name, actions: actions.split(",").filter((a) => allowed.includes(a)) };
      });
    const now = Math.floor(Date.now() / 1000);
    const token = jwt(
      { alg: "ES256", typ: "JWT", x5c: [certDer] },
      { iss: ISSUER, sub: user, aud: url.searchParams.get("service") ?? SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access },
      key,
    );
    issued++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }));
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certPath,
    users,
    issued: () => issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function jwt(header: object, claims: object, key: KeyObject): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${b64(header)}.${b64(claims)}`;
  // JWS ES256 wants the raw r||s signature, not DER.
  const sig = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  return `${input}.${sig.toString("base64url")}`;
}
