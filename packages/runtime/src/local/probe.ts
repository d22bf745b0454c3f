/**
 * Readiness: a web instance is ready when a TCP connect to its PORT succeeds and,
 * when the app has a health-check path, a GET of it answers below 400. Polled with
 * a bounded backoff; the instance's exit ends the wait at once. These waits watch
 * real processes, so they use real time, not the runtime's Clock.
 */
import http from "node:http";
import net from "node:net";
import { constants } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Exit } from "./driver.ts";

export type Readiness = { ok: true } | { ok: false; reason: string; lastExit: string; exit?: Exit };

export interface ReadyOptions {
  /** Absent for non-web processes: they are ready when still running after `settleMs`. */
  port?: number;
  healthCheckPath?: string;
  timeoutMs: number;
  settleMs: number;
  exited: Promise<Exit>;
  /** Checked between polls; true ends the wait (the instance is being stopped). */
  cancelled: () => boolean;
}

/**
 * Polls every FAST_POLL_MS for the first FAST_FOR_MS (most apps listen within that, and
 * a refused loopback connect costs microseconds), then back off to MAX_POLL_MS. A start
 * is noticed within 5 ms of the app listening: with a doubling from 10 ms, an app that
 * listened at 50 ms was seen at 70.
 */
const FAST_POLL_MS = 5;
const FAST_FOR_MS = 1000;
const MAX_POLL_MS = 100;

export async function waitReady(o: ReadyOptions): Promise<Readiness> {
  let exit: Exit | undefined;
  void o.exited.then((e) => (exit = e));
  const exitedOrSlept = (ms: number) => Promise.race([sleep(ms), o.exited]);
  const deadline = Date.now() + o.timeoutMs;

  if (o.port === undefined) {
    await exitedOrSlept(Math.min(o.settleMs, o.timeoutMs));
    if (exit) return exitFailure(exit);
    return o.cancelled() ? cancelled() : { ok: true };
  }

  const fastUntil = Date.now() + FAST_FOR_MS;
  let delay = FAST_POLL_MS;
  let health: string | undefined;
  for (;;) {
    if (exit) return exitFailure(exit);
    if (o.cancelled()) return cancelled();
    const left = deadline - Date.now();
    if (left <= 0) break;
    if (await tcpOpen(o.port, Math.min(left, 1000))) {
      if (!o.healthCheckPath) return { ok: true };
      const status = await httpStatus(o.port, o.healthCheckPath, Math.min(Math.max(deadline - Date.now(), 1), 2000));
      if (status !== undefined && status < 400) return { ok: true };
      // A last attempt cut short by the deadline does not hide an earlier answer.
      health = status !== undefined ? `answered ${status}` : (health ?? "did not answer");
    }
    await exitedOrSlept(Math.min(delay, Math.max(deadline - Date.now(), 0)));
    if (Date.now() >= fastUntil) delay = Math.min(delay * 2, MAX_POLL_MS);
  }
  // An exit racing the deadline is the better explanation.
  await Promise.race([sleep(20), o.exited]);
  if (exit) return exitFailure(exit);
  const within = `within ${seconds(o.timeoutMs)}`;
  if (health !== undefined) {
    return { ok: false, reason: `health check GET ${o.healthCheckPath} ${health} ${within}`, lastExit: "failed health check" };
  }
  return { ok: false, reason: `did not listen on PORT ${within}`, lastExit: "failed to bind PORT" };
}

function cancelled(): Readiness {
  return { ok: false, reason: "stopped while starting", lastExit: "stopped" };
}

function exitFailure(exit: Exit): Readiness {
  return { ok: false, reason: describeExit(exit).reason, lastExit: describeExit(exit).lastExit, exit };
}

const signalNames = new Map(Object.entries(constants.signals).map(([name, n]) => [n as number, name]));

/** `lastExit` for Instance, `reason` for BootFailed. */
export function describeExit(exit: Exit): { lastExit: string; reason: string } {
  if (exit.oom) return { lastExit: "out of memory", reason: "killed: out of memory" };
  if (exit.lost) return { lastExit: "exit status lost", reason: "its supervisor vanished: exit status lost" };
  const sig = exit.code > 128 ? signalNames.get(exit.code - 128) : undefined;
  if (sig) return { lastExit: `killed by ${sig}`, reason: `killed by ${sig}` };
  return { lastExit: `exited ${exit.code}`, reason: `exited with code ${exit.code}` };
}

export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1))}s`;
}

function tcpOpen(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

function httpStatus(port: number, path: string, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: timeoutMs, headers: { "user-agent": "berth-health-check" } }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(undefined));
  });
}
