import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The real Heroku CLI, pinned, installed from npm once into a cache outside the repo. */
export const HEROKU_CLI_VERSION = "11.10.0";

export async function herokuCli(): Promise<string> {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "berth-heroku-cli", HEROKU_CLI_VERSION);
  const bin = join(dir, "node_modules", ".bin", "heroku");
  if (existsSync(bin)) return bin;
  await mkdir(dir, { recursive: true });
  await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", dir, `heroku@${HEROKU_CLI_VERSION}`], { maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
  return bin;
}

/** Runs `heroku …` against a Berth API; never throws. */
export async function heroku(bin: string, args: string[], env: { apiUrl: string; token: string; home: string; cwd?: string }): Promise<{ code: number; out: string }> {
  try {
    const r = await run(bin, args, {
      cwd: env.cwd ?? env.home,
      timeout: 60_000,
      env: {
        PATH: process.env.PATH,
        HOME: env.home,
        HEROKU_HOST: env.apiUrl,
        HEROKU_PARTICLEBOARD_URL: env.apiUrl,
        HEROKU_API_KEY: env.token,
        DISABLE_TELEMETRY: "true",
        HEROKU_UPDATE_INSTRUCTIONS: "none",
        NO_COLOR: "1",
        ...(process.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS } : {}),
      },
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === "number" ? err.code : 1, out: (err.stdout ?? "") + (err.stderr ?? "") };
  }
}
