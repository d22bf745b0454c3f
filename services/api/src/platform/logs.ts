import type { LogLine } from "@berth/runtime";

/** Heroku's log line: `2026-11-23T23:12:17.000000+00:00 app[web.1]: text` */
export function formatLogLine(l: LogLine): string {
  const iso = l.at.toISOString().replace(/\.(\d{3})Z$/, ".$1000+00:00");
  return `${iso} ${l.source}[${l.dyno}]: ${l.text}`;
}

export interface LogFilter {
  source?: string | undefined;
  dyno?: string | undefined;
}

function matches(l: LogLine, f: LogFilter): boolean {
  if (f.source && l.source !== f.source) return false;
  if (f.dyno && l.dyno !== f.dyno && !l.dyno.startsWith(`${f.dyno}.`)) return false;
  return true;
}

/**
 * One log stream per app: app output, router access lines, build and release
 * events. Keeps a bounded recent history per app (a ring) and fans new lines out
 * to live sessions. In memory: history is lost when the API restarts, like
 * Heroku's `logs` (which keeps 1,500 lines) for a restarted Logplex.
 */
export class LogHub {
  readonly #history = new Map<string, LogLine[]>();
  readonly #subs = new Map<string, Set<(l: LogLine) => void>>();
  readonly #keep: number;
  constructor(keep = 1500) {
    this.#keep = keep;
  }

  push(l: LogLine): void {
    let ring = this.#history.get(l.appId);
    if (!ring) this.#history.set(l.appId, (ring = []));
    ring.push(l);
    if (ring.length > this.#keep) ring.splice(0, ring.length - this.#keep);
    for (const fn of this.#subs.get(l.appId) ?? []) fn(l);
  }

  recent(appId: string, lines: number, filter: LogFilter = {}): LogLine[] {
    const ring = (this.#history.get(appId) ?? []).filter((l) => matches(l, filter));
    return lines <= 0 ? [] : ring.slice(-lines);
  }

  subscribe(appId: string, filter: LogFilter, fn: (l: LogLine) => void): () => void {
    let set = this.#subs.get(appId);
    if (!set) this.#subs.set(appId, (set = new Set()));
    const wrapped = (l: LogLine) => matches(l, filter) && fn(l);
    set.add(wrapped);
    return () => set.delete(wrapped);
  }

  forget(appId: string): void {
    this.#history.delete(appId);
  }
}
