import { spawn } from "node:child_process";
import { Readable } from "node:stream";
import type { Context, Hono } from "hono";
import { stream } from "hono/streaming";
import { NotFound, Unauthorized, isBerthError, type Logger } from "@berth/core";
import type { Db } from "@berth/db";
import { appFor, type Level } from "../domain/access.ts";
import type { Accounts } from "../domain/accounts.ts";
import type { Env } from "../http/routes.ts";
import { constantTimeEqual } from "../auth/tokens.ts";
import type { Repos } from "./repos.ts";
import { limitBytes } from "../http/limits.ts";
import { AsyncQueue } from "../http/queue.ts";

/** What a push asks of the platform: build this tree and release it, printing progress. */
export interface GitDeploys {
  deploy(input: { appId: string; userId: string; rev: string; tar: Readable }, out: (line: string) => void): Promise<boolean>;
}

export interface GitDeps {
  db: Db;
  accounts: Accounts;
  repos: Repos;
  deploys: GitDeploys;
  logger: Logger;
  /** How the pre-receive hook reaches this API (loopback). */
  internalUrl: string;
  /** Shared secret between this API and its hooks; random per process. */
  hookToken: string;
  maxPushBytes: number;
}

const SERVICES: Record<string, Level> = { "git-upload-pack": "read", "git-receive-pack": "write" };

function challenge(c: Context, message: string) {
  c.header("WWW-Authenticate", 'Basic realm="Berth"');
  return c.text(`${message}\n`, 401);
}

/**
 * Git smart HTTP at /<app>.git, served by `git http-backend` as CGI. HTTP Basic
 * with any user name and an API token as password; fetching needs read access,
 * pushing write access. Unknown apps and apps of other teams look the same (404).
 */
export function mountGit(app: Hono<Env>, deps: GitDeps): void {
  const pushTurns = new KeyedMutex();
  const handle = async (c: Context<Env>, name: string, tail: string) => {
    const service = tail === "/info/refs" ? c.req.query("service") : tail.slice(1);
    const level = service ? SERVICES[service] : undefined;
    if (!level) return c.text("Only smart HTTP is supported; use a git client ≥ 1.6.6.\n", 403);
    const header = c.req.header("Authorization") ?? "";
    if (!/^basic /i.test(header)) return challenge(c, "Authentication required: use any user name and an API token as the password.");
    const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
    const token = decoded.slice(decoded.indexOf(":") + 1);
    const who = await deps.accounts.userForToken(token);
    if (!who) return challenge(c, "Invalid credentials: the password must be a Berth API token.");
    let target;
    try {
      target = await appFor(deps.db, who.userId, name, level);
    } catch (e) {
      if (isBerthError(e) && e.id === "forbidden") return c.text("You may fetch from this app but not push to it (viewer role).\n", 403);
      if (isBerthError(e) && e.id === "not_found") return c.text(`App ${name} not found.\n`, 404);
      throw e;
    }
    const length = Number(c.req.header("Content-Length") ?? "0");
    if (length > deps.maxPushBytes) return c.text(`Push is larger than the ${deps.maxPushBytes >> 20} MiB limit.\n`, 413);
    await deps.repos.ensure(target.id);
    const hookUrl = new URL("/internal/git/deploy", deps.internalUrl);
    hookUrl.searchParams.set("app", target.id);
    hookUrl.searchParams.set("user", who.userId);
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_PROJECT_ROOT: deps.repos.root,
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: `/${deps.repos.dirName(target.id)}${tail}`,
      QUERY_STRING: new URL(c.req.url).search.slice(1),
      REQUEST_METHOD: c.req.method,
      CONTENT_TYPE: c.req.header("Content-Type") ?? "",
      REMOTE_USER: who.userId,
      REMOTE_ADDR: "127.0.0.1",
      BERTH_HOOK_URL: hookUrl.toString(),
      BERTH_HOOK_TOKEN: deps.hookToken,
    };
    const enc = c.req.header("Content-Encoding");
    if (enc) env.HTTP_CONTENT_ENCODING = enc;
    const proto = c.req.header("Git-Protocol");
    if (proto) env.GIT_PROTOCOL = proto;
    if (c.req.header("Content-Length")) env.CONTENT_LENGTH = c.req.header("Content-Length")!;
    // One receive-pack per app at a time, held until git has updated the ref, so
    // a waiting push's hook sees the branch as the previous push left it.
    const release = service === "git-receive-pack" && tail !== "/info/refs" ? await pushTurns.acquire(target.id) : () => {};
    const cgi = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] });
    cgi.on("close", release);
    cgi.stderr.on("data", (d: Buffer) => deps.logger.warn("git http-backend", { app: target.name, stderr: d.toString().trim() }));
    const body = c.req.raw.body;
    if (body) {
      const limited = limitBytes(Readable.fromWeb(body as import("node:stream/web").ReadableStream), deps.maxPushBytes, "Pushes");
      limited.on("error", () => cgi.kill("SIGKILL"));
      limited.pipe(cgi.stdin).on("error", () => {});
    } else {
      cgi.stdin.end();
    }
    return respondCgi(c, cgi.stdout);
  };

  app.on(["GET", "POST"], "/:repo{[a-z][a-z0-9-]{2,29}\\.git}/*", async (c) => {
    const name = c.req.param("repo")!.slice(0, -4);
    const tail = c.req.path.slice(c.req.path.indexOf(".git/") + 4);
    if (!["/info/refs", "/git-upload-pack", "/git-receive-pack"].includes(tail)) throw new NotFound("git endpoint");
    return handle(c, name, tail);
  });

  app.post("/internal/git/deploy", async (c) => {
    const auth = c.req.header("Authorization") ?? "";
    if (!constantTimeEqual(auth, `Bearer ${deps.hookToken}`)) throw new Unauthorized("Hook token required.");
    const appId = c.req.query("app")!;
    const userId = c.req.query("user")!;
    const rev = c.req.query("rev") ?? "";
    const tar = Readable.fromWeb(c.req.raw.body! as import("node:stream/web").ReadableStream);
    return stream(c, async (s) => {
      const queue = new AsyncQueue<string>();
      const out = (line: string) => queue.push(line);
      const result = deps.deploys.deploy({ appId, userId, rev, tar }, out).then(
        (ok) => ok,
        (e: unknown) => {
          deps.logger.error("git deploy failed", { app: appId, err: e });
          out(` !     Push failed: ${isBerthError(e) ? e.message : "internal error"}`);
          return false;
        },
      );
      void result.finally(() => queue.close());
      for await (const next of queue.drain()) if ("item" in next) await s.write(next.item + "\n");
      await s.write(`berth-result: ${(await result) ? "ok" : "failed"}\n`);
    });
  });
}

/** Turns a CGI answer (headers, blank line, body) into a streamed HTTP response. */
async function respondCgi(c: Context, out: Readable): Promise<Response> {
  let buf = Buffer.alloc(0);
  const iterator = out[Symbol.asyncIterator]();
  let headerEnd = -1;
  while (headerEnd < 0) {
    const next = await iterator.next();
    if (next.done) break;
    buf = Buffer.concat([buf, next.value as Buffer]);
    headerEnd = buf.indexOf("\r\n\r\n");
    if (headerEnd < 0) headerEnd = buf.indexOf("\n\n") >= 0 ? buf.indexOf("\n\n") : -1;
    if (buf.length > 64 * 1024 && headerEnd < 0) break;
  }
  if (headerEnd < 0) return c.text("git http-backend gave no answer\n", 502);
  const sep = buf[headerEnd] === 13 ? 4 : 2;
  const headerText = buf.subarray(0, headerEnd).toString("latin1");
  let rest: Buffer | undefined = buf.subarray(headerEnd + sep);
  let status = 200;
  const headers = new Headers();
  for (const line of headerText.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    if (k.toLowerCase() === "status") status = Number.parseInt(v, 10) || 200;
    else headers.append(k, v);
  }
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (rest && rest.length) {
        controller.enqueue(new Uint8Array(rest));
        rest = undefined;
        return;
      }
      const next = await iterator.next();
      if (next.done) controller.close();
      else controller.enqueue(new Uint8Array(next.value as Buffer));
    },
    async cancel() {
      out.destroy();
    },
  });
  return new Response(body, { status, headers });
}

/** FIFO mutual exclusion per key (an app id). */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();
  async acquire(key: string): Promise<() => void> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}
