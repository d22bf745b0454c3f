#!/usr/bin/env node
/**
 * `berth`: the command line for Berth, in Heroku's words (apps:create, config:set,
 * ps:scale, releases:rollback, logs --tail…). Talks to the Platform API only.
 * Credentials: BERTH_API_KEY, or the token `berth login` stores in ~/.netrc (which
 * git also reads for the `platform` remote).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ApiError, Client } from "./client.ts";

const apiUrl = (process.env.BERTH_API_URL ?? "http://127.0.0.1:7700").replace(/\/$/, "");
const host = new URL(apiUrl).hostname;
const netrcPath = join(process.env.HOME ?? homedir(), ".netrc");

function readNetrcToken(): string | undefined {
  if (!existsSync(netrcPath)) return undefined;
  const words = readFileSync(netrcPath, "utf8").split(/\s+/);
  for (let i = 0; i < words.length; i++) {
    if (words[i] === "machine" && words[i + 1] === host) {
      for (let j = i + 2; j < words.length && words[j] !== "machine"; j++) if (words[j] === "password") return words[j + 1];
    }
  }
  return undefined;
}

function writeNetrc(email: string, token: string): void {
  const keep = existsSync(netrcPath) ? readFileSync(netrcPath, "utf8").split(/(?=^machine )/m).filter((block) => !block.startsWith(`machine ${host}\n`) && !block.startsWith(`machine ${host} `)) : [];
  keep.push(`machine ${host}\n  login ${email}\n  password ${token}\n`);
  writeFileSync(netrcPath, keep.join(""), { mode: 0o600 });
  chmodSync(netrcPath, 0o600);
}

const token = process.env.BERTH_API_KEY ?? readNetrcToken();
const api = new Client(apiUrl, token);

function flag(args: string[], name: string, short?: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}` || (short && args[i] === `-${short}`)) return args.splice(i, 2)[1];
    if (args[i]!.startsWith(`--${name}=`)) return args.splice(i, 1)[0]!.slice(name.length + 3);
  }
  return undefined;
}
function bool(args: string[], name: string, short?: string): boolean {
  const i = args.findIndex((a) => a === `--${name}` || (short !== undefined && a === `-${short}`));
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
}

/** The app: --app/-a, else the `platform` git remote of the current directory. */
function appName(args: string[]): string {
  const a = flag(args, "app", "a");
  if (a) return a;
  try {
    const url = execFileSync("git", ["remote", "get-url", "platform"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const m = /\/([a-z][a-z0-9-]*)\.git$/.exec(url);
    if (m) return m[1]!;
  } catch {
    /* not a git repository */
  }
  throw new Error("No app specified: use --app NAME, or run inside a repository with a 'platform' remote.");
}

function table(rows: Record<string, unknown>[], cols: string[]): void {
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  console.log(cols.map((c, i) => c.toUpperCase().padEnd(widths[i]!)).join("  "));
  for (const r of rows) console.log(cols.map((c, i) => String(r[c] ?? "").padEnd(widths[i]!)).join("  "));
}

async function prompt(q: string): Promise<string> {
  process.stdout.write(q);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    if (String(c).includes("\n")) break;
  }
  return Buffer.concat(chunks).toString().trim();
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  async signup(args) {
    const email = args[0] ?? (await prompt("Email: "));
    const password = process.env.BERTH_PASSWORD ?? (await prompt("Password: "));
    await new Client(apiUrl).request("POST", "/users", { email, password });
    console.log(`Signed up ${email}. Now run: berth login`);
  },
  async login(args) {
    const email = args[0] ?? (await prompt("Email: "));
    const password = process.env.BERTH_PASSWORD ?? (await prompt("Password: "));
    const auth = await new Client(apiUrl).request("POST", "/oauth/authorizations", { description: "berth CLI" }, { Authorization: `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}` });
    writeNetrc(email, auth.access_token.token);
    console.log(`Logged in as ${email} (token saved in ${netrcPath})`);
  },
  async "auth:whoami"() {
    console.log((await api.request("GET", "/account")).email);
  },
  async "auth:token"() {
    if (!token) throw new Error("Not logged in.");
    console.log(token);
  },
  async apps(args) {
    const team = flag(args, "team", "t");
    const apps = await api.request<any[]>("GET", team ? `/teams/${team}/apps` : "/apps");
    table(apps.map((a) => ({ name: a.name, team: a.team?.name ?? "(personal)", url: a.web_url })), ["name", "team", "url"]);
  },
  async "apps:create"(args) {
    const team = flag(args, "team", "t");
    const noRemote = bool(args, "no-remote");
    const app = await api.request("POST", team ? "/teams/apps" : "/apps", { ...(args[0] ? { name: args[0] } : {}), ...(team ? { team } : {}) });
    console.log(`Creating ${app.name}... done`);
    console.log(`${app.web_url} | ${app.git_url}`);
    if (!noRemote) {
      try {
        execFileSync("git", ["remote", "add", "platform", app.git_url], { stdio: "ignore" });
        console.log("Git remote platform added");
      } catch {
        /* not a git repository, or the remote exists */
      }
    }
  },
  async "apps:info"(args) {
    const a = await api.request("GET", `/apps/${appName(args)}`);
    console.log(`=== ${a.name}\nOwner:    ${a.owner.email}\nTeam:     ${a.team?.name ?? "(personal)"}\nGit URL:  ${a.git_url}\nWeb URL:  ${a.web_url}\nStack:    ${a.stack.name}\nReleased: ${a.released_at ?? "never"}`);
  },
  async "apps:destroy"(args) {
    const name = appName(args);
    const confirm = flag(args, "confirm");
    if (confirm !== name) throw new Error(`This deletes ${name} and everything it runs. Re-run with --confirm ${name}`);
    await api.request("DELETE", `/apps/${name}`);
    console.log(`Destroying ${name}... done`);
  },
  async "git:remote"(args) {
    const a = await api.request("GET", `/apps/${appName(args)}`);
    execFileSync("git", ["remote", "add", "platform", a.git_url]);
    console.log(`set git remote platform to ${a.git_url}`);
  },
  async config(args) {
    const vars = await api.request<Record<string, string>>("GET", `/apps/${appName(args)}/config-vars`);
    for (const [k, v] of Object.entries(vars)) console.log(`${k}: ${v}`);
  },
  async "config:set"(args) {
    const app = appName(args);
    const body = Object.fromEntries(args.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    await api.request("PATCH", `/apps/${app}/config-vars`, body);
    const [latest] = await api.request<any[]>("GET", `/apps/${app}/releases`, undefined, { Range: "version ..; order=desc, max=1" });
    console.log(`Setting ${Object.keys(body).join(", ")} on ${app}... done, v${latest.version}`);
  },
  async "config:unset"(args) {
    const app = appName(args);
    await api.request("PATCH", `/apps/${app}/config-vars`, Object.fromEntries(args.map((k) => [k, null])));
    console.log(`Unsetting ${args.join(", ")} on ${app}... done`);
  },
  async releases(args) {
    const rs = await api.request<any[]>("GET", `/apps/${appName(args)}/releases`, undefined, { Range: "version ..; order=desc, max=15" });
    table(rs.map((r) => ({ version: `v${r.version}`, status: r.status, description: r.description, user: r.user?.email ?? "", created: r.created_at })), ["version", "status", "description", "user", "created"]);
  },
  async "releases:rollback"(args) {
    const app = appName(args);
    const target = args[0];
    let version = target?.replace(/^v/, "");
    if (!version) {
      const rs = await api.request<any[]>("GET", `/apps/${app}/releases`, undefined, { Range: "version ..; order=desc, max=2" });
      version = String(rs[1]?.version ?? "");
    }
    const r = await api.request("POST", `/apps/${app}/releases`, { release: version });
    console.log(`Rolling back ${app} to v${version}... done, v${r.version}`);
  },
  async ps(args) {
    const app = appName(args);
    const [formation, dynos] = await Promise.all([api.request<any[]>("GET", `/apps/${app}/formation`), api.request<any[]>("GET", `/apps/${app}/dynos`)]);
    for (const f of formation) {
      console.log(`=== ${f.type} (${f.size}): ${f.command} (${f.quantity} configured)`);
      for (const d of dynos.filter((x) => x.type === f.type)) console.log(`${d.name}: ${d.state} ${d.updated_at}${d.last_exit ? ` (last exit: ${d.last_exit})` : ""}`);
    }
  },
  async "ps:scale"(args) {
    const app = appName(args);
    const updates = args.map((a) => {
      const m = /^([a-zA-Z0-9_-]+)=(\d+)(?::([A-Za-z0-9-]+))?$/.exec(a);
      if (!m) throw new Error(`Use TYPE=QUANTITY[:SIZE], e.g. web=2:standard-1x (got ${a})`);
      return { type: m[1]!, quantity: Number(m[2]), ...(m[3] ? { size: m[3] } : {}) };
    });
    const res = await api.request<any[]>("PATCH", `/apps/${app}/formation`, { updates });
    console.log(`Scaling dynos... done, now running ${res.map((f) => `${f.type} at ${f.quantity}:${f.size}`).join(", ")}`);
  },
  async "ps:restart"(args) {
    const app = appName(args);
    await api.request("DELETE", args[0] ? `/apps/${app}/dynos/${args[0]}` : `/apps/${app}/dynos`);
    console.log(`Restarting ${args[0] ?? "dynos"} on ${app}... done`);
  },
  async logs(args) {
    const app = appName(args);
    const tail = bool(args, "tail", "t");
    const lines = Number(flag(args, "num", "n") ?? "100");
    const dyno = flag(args, "dyno", "d");
    const source = flag(args, "source", "s");
    const session = await api.request("POST", `/apps/${app}/log-sessions`, { lines, tail, ...(dyno ? { dyno } : {}), ...(source ? { source } : {}) });
    const res = await fetch(session.logplex_url);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) process.stdout.write(chunk);
  },
  async domains(args) {
    const ds = await api.request<any[]>("GET", `/apps/${appName(args)}/domains`);
    table(ds.map((d) => ({ hostname: d.hostname, kind: d.kind, target: d.cname ?? "" })), ["hostname", "kind", "target"]);
  },
  async "domains:add"(args) {
    const app = appName(args);
    const d = await api.request("POST", `/apps/${app}/domains`, { hostname: args[0] });
    console.log(`Adding ${d.hostname} to ${app}... done\nPoint a CNAME for ${d.hostname} at ${d.cname}`);
  },
  async "domains:remove"(args) {
    const app = appName(args);
    await api.request("DELETE", `/apps/${app}/domains/${args[0]}`);
    console.log(`Removing ${args[0]} from ${app}... done`);
  },
  async "maintenance:on"(args) {
    await api.request("PATCH", `/apps/${appName(args)}`, { maintenance: true });
    console.log("Enabling maintenance mode... done");
  },
  async "maintenance:off"(args) {
    await api.request("PATCH", `/apps/${appName(args)}`, { maintenance: false });
    console.log("Disabling maintenance mode... done");
  },
  async teams() {
    table(await api.request<any[]>("GET", "/teams"), ["name", "role"]);
  },
  async "teams:create"(args) {
    const t = await api.request("POST", "/teams", { name: args[0] });
    console.log(`Creating ${t.name}... done`);
  },
  async members(args) {
    const team = flag(args, "team", "t") ?? args[0];
    table(await api.request<any[]>("GET", `/teams/${team}/members`), ["email", "role"]);
  },
  async "members:set"(args) {
    const team = flag(args, "team", "t");
    const role = flag(args, "role", "r") ?? "member";
    const m = await api.request("PUT", `/teams/${team}/members`, { email: args[0], role });
    console.log(`Adding ${m.email} to ${team} as ${m.role}... done`);
  },
  async "members:remove"(args) {
    const team = flag(args, "team", "t");
    await api.request("DELETE", `/teams/${team}/members/${encodeURIComponent(args[0] ?? "")}`);
    console.log(`Removing ${args[0]} from ${team}... done`);
  },
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  const run = cmd ? commands[cmd] : undefined;
  if (!run) {
    console.log(`Usage: berth COMMAND [--app NAME]\n\nCommands:\n  ${Object.keys(commands).sort().join("\n  ")}`);
    return cmd && cmd !== "help" ? 1 : 0;
  }
  try {
    await run(args);
    return 0;
  } catch (e) {
    console.error(` ▸    ${e instanceof ApiError || e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
