/**
 * App output from the pod log API: one follow stream per running container
 * (kubelet → API server → here), split into lines and published as `log` events.
 * Timestamps (`timestamps=true`) date each line and let a stream that broke resume
 * (`sinceTime`) without repeating lines.
 *
 * At scale a node agent shipping container logs would replace this: every follow
 * stream is a connection through the API server.
 */
import { Writable } from "node:stream";
import type { Logger } from "@berth/core";
import type { LogLine } from "../port.ts";
import { toMs, type Kube, type Pod } from "./kube.ts";
import { appContainer } from "./instances.ts";
import { APP_CONTAINER, L_APP, L_DYNO } from "./names.ts";

/** A Writable that calls `onLine` per complete line and `onEnd` when the source ends. */
export function lineSink(onLine: (line: string) => void, onEnd: () => void): Writable {
  let rest = "";
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      const text = rest + chunk.toString("utf8");
      const parts = text.split("\n");
      rest = parts.pop() ?? "";
      for (const p of parts) onLine(p);
      cb();
    },
    final(cb) {
      if (rest) onLine(rest);
      rest = "";
      onEnd();
      cb();
    },
  });
}

/** "2026-11-24T01:07:37.12345Z text" → [sortable time key, Date, text]. */
export function splitTimestamp(line: string): { key: string; at: Date; text: string } | undefined {
  const sp = line.indexOf(" ");
  const ts = sp > 0 ? line.slice(0, sp) : "";
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) return undefined;
  const at = new Date(ts);
  if (Number.isNaN(at.getTime())) return undefined;
  // Fractions come trimmed (RFC 3339 nano): pad so that keys compare as strings.
  return { key: `${at.toISOString().slice(0, 19)}.${(m[2] ?? "").padEnd(9, "0")}`, at, text: line.slice(sp + 1) };
}

interface Stream {
  stop?: () => void;
  ended: boolean;
}

export class LogFollower {
  readonly #kube: Kube;
  readonly #emit: (line: LogLine) => void;
  readonly #logger: Logger;
  readonly #pods: () => Iterable<Pod>;
  /** "<pod uid>/<restartCount>" → stream of that container run. */
  readonly #streams = new Map<string, Stream>();
  /** Last line's time key per pod uid, so a resumed stream skips what was delivered. */
  readonly #last = new Map<string, string>();
  #stopped = false;

  constructor(kube: Kube, pods: () => Iterable<Pod>, emit: (line: LogLine) => void, logger: Logger) {
    this.#kube = kube;
    this.#pods = pods;
    this.#emit = emit;
    this.#logger = logger;
  }

  /** Follows every running app container; forgets streams of containers that are gone. */
  sync(): void {
    if (this.#stopped) return;
    const wanted = new Set<string>();
    const uids = new Set<string>();
    for (const pod of this.#pods()) {
      const c = appContainer(pod);
      const uid = pod.metadata.uid ?? pod.metadata.name;
      uids.add(uid);
      if (!c?.state?.running || !pod.metadata.labels?.[L_DYNO]) continue;
      const k = `${uid}/${c.restartCount}`;
      wanted.add(k);
      const s = this.#streams.get(k);
      // A stopping pod's stream goes on (its last words matter) but is not reopened.
      if (!s || (s.ended && !pod.metadata.deletionTimestamp)) this.#follow(pod, k, uid, toMs(c.state.running.startedAt));
    }
    for (const [k, s] of this.#streams) {
      if (wanted.has(k)) continue;
      s.stop?.();
      this.#streams.delete(k);
    }
    for (const uid of this.#last.keys()) if (!uids.has(uid)) this.#last.delete(uid);
  }

  stop(): void {
    this.#stopped = true;
    for (const s of this.#streams.values()) s.stop?.();
    this.#streams.clear();
  }

  #follow(pod: Pod, k: string, uid: string, startedMs: number | undefined): void {
    const s: Stream = { ended: false };
    this.#streams.set(k, s);
    const appId = pod.metadata.labels![L_APP]!;
    const dyno = pod.metadata.labels![L_DYNO]!;
    const last = this.#last.get(uid);
    // sinceTime has whole seconds: a resumed stream repeats up to a second, which the time keys skip.
    const since = last ? `${last.slice(0, 19)}Z` : startedMs !== undefined ? new Date(startedMs).toISOString().replace(/\.\d+Z$/, "Z") : undefined;
    const ended = () => {
      s.ended = true;
      // A stream that broke while its container runs is resumed; one whose container ended is not.
      if (!this.#stopped) setTimeout(() => this.sync(), 1000).unref();
    };
    const sink = lineSink((line) => {
      const t = splitTimestamp(line);
      if (!t) return;
      const prev = this.#last.get(uid);
      if (prev && t.key <= prev) return;
      this.#last.set(uid, t.key);
      this.#emit({ appId, at: t.at, source: "app", dyno, text: t.text });
    }, ended);
    this.#kube.log(pod.metadata.namespace!, pod.metadata.name, APP_CONTAINER, sink, { follow: true, timestamps: true, ...(since ? { sinceTime: since } : {}) }).then(
      (stop) => {
        if (this.#stopped || this.#streams.get(k) !== s) stop();
        else s.stop = stop;
      },
      (e: unknown) => {
        // The container may have ended meanwhile (400); the next pod event decides again.
        s.ended = true;
        if (!this.#stopped) this.#logger.warn("could not follow a dyno's log", { pod: pod.metadata.name, err: (e as Error).message });
      },
    );
  }
}

/** The whole log of a (finished) container, up to `limitBytes`. */
export async function readLog(kube: Kube, namespace: string, pod: string, limitBytes: number, timeoutMs = 10_000): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  let resolveEnd!: () => void;
  const ended = new Promise<void>((r) => (resolveEnd = r));
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (size < limitBytes) chunks.push(chunk.subarray(0, limitBytes - size));
      size += chunk.length;
      cb();
    },
    final(cb) {
      resolveEnd();
      cb();
    },
  });
  const stop = await kube.log(namespace, pod, APP_CONTAINER, sink, { limitBytes });
  const timer = setTimeout(() => {
    stop();
    resolveEnd();
  }, timeoutMs);
  await ended;
  clearTimeout(timer);
  return Buffer.concat(chunks).toString("utf8");
}
