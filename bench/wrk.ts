/** wrk (Debian package) at fixed concurrency for a fixed time, output parsed. */
import { run } from "./proc.ts";

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Socket errors plus non-2xx/3xx answers. */
  errors: number;
}

export interface LoadOptions {
  port: number;
  host?: string;
  threads: number;
  connections: number;
  seconds: number;
}

export async function wrk(o: LoadOptions): Promise<LoadResult> {
  const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${Math.max(1, Math.round(o.seconds))}s`, "--latency", "--timeout", "10s"];
  if (o.host) args.push("-H", `Host: ${o.host}`);
  args.push(`http://127.0.0.1:${o.port}/`);
  const { stdout } = await run("wrk", args, { timeout: (o.seconds + 30) * 1000 });
  return parseWrk(stdout);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function ms(value: string, unit: string): number {
  return Number(value) * (UNIT_MS[unit] ?? Number.NaN);
}

export function parseWrk(out: string): LoadResult {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(out);
    return m ? ms(m[1]!, m[2]!) : Number.NaN;
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = non2xx + (socket ? socket.slice(1).reduce((n, x) => n + Number(x), 0) : 0);
  return { rps, p50Ms: pct("50"), p99Ms: pct("99"), requests, errors };
}
