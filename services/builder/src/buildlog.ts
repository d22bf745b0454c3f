import type { Db, EventBus } from "@berth/db";

/**
 * Appends a build's output to build_logs in small batches and announces each
 * batch, so followers (git push, output_stream_url) see lines within ~50 ms.
 * Caps the number of lines kept; past the cap a single notice is written.
 */
export class BuildLogWriter {
  readonly #db: Db;
  readonly #events: EventBus;
  readonly #buildId: string;
  readonly #maxLines: number;
  #seq = 0;
  #buffer: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #truncated = false;

  constructor(db: Db, events: EventBus, buildId: string, startSeq: number, maxLines = 20_000) {
    this.#db = db;
    this.#events = events;
    this.#buildId = buildId;
    this.#seq = startSeq;
    this.#maxLines = maxLines;
  }

  line(text: string): void {
    if (this.#seq + this.#buffer.length >= this.#maxLines) {
      if (!this.#truncated) {
        this.#truncated = true;
        this.#buffer.push(` !     Build output truncated after ${this.#maxLines} lines.`);
      }
      return;
    }
    this.#buffer.push(text.length > 4000 ? text.slice(0, 4000) + "…" : text);
    this.#timer ??= setTimeout(() => void this.flush(), 50);
  }

  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#buffer;
    this.#buffer = [];
    if (batch.length === 0) return this.#flushing;
    const start = this.#seq;
    this.#seq += batch.length;
    this.#flushing = this.#flushing.then(async () => {
      await this.#db
        .insertInto("build_logs")
        .values(batch.map((line, i) => ({ build_id: this.#buildId, seq: start + i, line })))
        .execute();
      await this.#events.publish({ kind: "build.log", buildId: this.#buildId, seq: start + batch.length - 1 });
    });
    return this.#flushing;
  }
}
