/**
 * git's pre-receive hook for Berth repositories. It runs inside `git
 * receive-pack` with the pushed objects still in quarantine, so it archives the
 * pushed commit itself and hands the tarball to the API, printing the build's
 * output as it arrives (git shows it as `remote:` lines). Exit 1 rejects the
 * push and leaves the branch where it was.
 *
 * Contract with the API: POST $BERTH_HOOK_URL with the tar as body; the answer
 * streams text; its last line is `berth-result: ok` or `berth-result: failed`.
 */
import { spawn } from "node:child_process";
import { request } from "node:http";
import { createInterface } from "node:readline";

const ZERO = /^0+$/;

async function main(): Promise<number> {
  const updates: { oldRev: string; newRev: string; ref: string }[] = [];
  for await (const line of createInterface({ input: process.stdin })) {
    const [oldRev, newRev, ref] = line.trim().split(/\s+/);
    if (oldRev && newRev && ref) updates.push({ oldRev, newRev, ref });
  }
  const deploy = updates.find((u) => u.ref === "refs/heads/main" || u.ref === "refs/heads/master");
  for (const u of updates) {
    if (u !== deploy) {
      console.log(` !     Pushing to ${u.ref} is not supported. Push main (or master) to deploy:`);
      console.log(` !       git push platform HEAD:main`);
      return 1;
    }
  }
  if (!deploy) return 0;
  if (ZERO.test(deploy.newRev)) {
    console.log(" !     Deleting the deployed branch is not allowed.");
    return 1;
  }
  // Pushes to one app are serialised by the API, so the branch is final here: if
  // it moved since this push read it, another push landed first while this one
  // waited. Building would release code whose ref update must then fail.
  const current = await revParse(deploy.ref);
  if (current !== (ZERO.test(deploy.oldRev) ? "" : deploy.oldRev)) {
    console.log(` !     ${deploy.ref.replace("refs/heads/", "")} moved while this push waited for another push to this app.`);
    console.log(" !     Fetch, merge or rebase, and push again.");
    return 1;
  }
  const url = new URL(process.env.BERTH_HOOK_URL!);
  url.searchParams.set("rev", deploy.newRev);
  url.searchParams.set("ref", deploy.ref);
  const archive = spawn("git", ["archive", "--format=tar", deploy.newRev], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise<number>((resolve) => {
    let tail = "";
    let result: string | undefined;
    const req = request(url, { method: "POST", headers: { Authorization: `Bearer ${process.env.BERTH_HOOK_TOKEN}`, "Content-Type": "application/x-tar" } }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        const text = tail + chunk;
        const lines = text.split("\n");
        tail = lines.pop()!;
        for (const l of lines) {
          if (l.startsWith("berth-result: ")) result = l.slice(14).trim();
          else process.stdout.write(l + "\n");
        }
      });
      res.on("end", () => {
        if (tail.startsWith("berth-result: ")) result = tail.slice(14).trim();
        else if (tail) process.stdout.write(tail + "\n");
        if (res.statusCode !== 200 && result === undefined) console.log(` !     Push rejected by the platform (HTTP ${res.statusCode}).`);
        resolve(result === "ok" ? 0 : 1);
      });
    });
    req.on("error", (e) => {
      console.log(` !     Push rejected: the platform could not be reached (${e.message}).`);
      resolve(1);
    });
    archive.stdout.pipe(req);
    archive.on("exit", (code) => {
      if (code !== 0) {
        req.destroy(new Error(`git archive exited ${code}`));
      }
    });
  });
}

function revParse(ref: string): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn("git", ["rev-parse", "--verify", "-q", ref], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.on("exit", () => resolve(out.trim()));
  });
}

process.exitCode = await main();
