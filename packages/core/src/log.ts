/** Structured logging as a port: services log key=value lines; tests pass a silent or capturing logger. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function fmt(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.stack ?? v.message);
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s ?? "") ? JSON.stringify(s) : String(s);
}

export function consoleLogger(base: Record<string, unknown> = {}, write: (line: string) => void = (l) => process.stderr.write(l + "\n")): Logger {
  const emit = (level: string, msg: string, fields?: Record<string, unknown>) => {
    const all = { ...base, ...fields };
    const kv = Object.entries(all)
      .map(([k, v]) => `${k}=${fmt(v)}`)
      .join(" ");
    write(`${new Date().toISOString()} ${level} ${msg}${kv ? " " + kv : ""}`);
  };
  return {
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (f) => consoleLogger({ ...base, ...f }, write),
  };
}

export const silentLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};
