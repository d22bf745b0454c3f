import { Transform, type Readable } from "node:stream";
import { TooLarge } from "@berth/core";

/** Passes a stream through, failing it with TooLarge once more than `max` bytes went by. */
export function limitBytes(source: Readable, max: number, what: string): Readable {
  let seen = 0;
  return source.pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > max) done(new TooLarge(`${what} may be at most ${max >> 20} MiB.`));
        else done(null, chunk);
      },
    }),
  );
}
