import type { RouterCode } from "./codes.ts";

/** One routed request, as the router saw it. */
export interface AccessLogEntry {
  at: "info" | "error";
  code?: RouterCode;
  desc?: string;
  /** Absent when no app matched the host. */
  appId?: string;
  appName?: string;
  method: string;
  path: string;
  host: string;
  requestId: string;
  fwd: string;
  dyno: string;
  connectMs: number;
  serviceMs: number;
  status: number;
  bytes: number;
  protocol: "http" | "https";
}

const NEEDS_ESCAPE = /[\\"\x00-\x1f\x7f]/;
const NOT_BARE = /[^\x21-\x7e]|"/;

function quoted(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}"`;
}

function bare(s: string): string {
  return NOT_BARE.test(s) ? s.replace(/[^\x21-\x7e]|"/g, "") : s;
}

/** Heroku router log format: `at=info method=GET path="/" host=… status=200 bytes=123 protocol=http`. */
export function formatAccessLog(e: AccessLogEntry): string {
  const head = e.code ? `at=${e.at} code=${e.code} desc=${quoted(e.desc ?? "")} ` : `at=${e.at} `;
  return (
    head +
    `method=${bare(e.method)} path=${quoted(e.path)} host=${bare(e.host)} request_id=${bare(e.requestId)} ` +
    `fwd=${quoted(e.fwd)} dyno=${bare(e.dyno)} connect=${Math.max(0, Math.round(e.connectMs))}ms ` +
    `service=${Math.max(0, Math.round(e.serviceMs))}ms status=${e.status} bytes=${e.bytes} protocol=${e.protocol}`
  );
}
