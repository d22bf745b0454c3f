import { expect, test } from "vitest";
import { AsyncQueue } from "./queue.ts";

test("yields pushed items in order and ends after close", async () => {
  const q = new AsyncQueue<number>();
  q.push(1);
  setImmediate(() => {
    q.push(2);
    q.close();
  });
  const got: unknown[] = [];
  for await (const x of q.drain()) got.push(x);
  expect(got).toEqual([{ item: 1 }, { item: 2 }]);
});

test("yields idle when nothing arrives for idleMs", async () => {
  const q = new AsyncQueue<number>();
  const it = q.drain(5);
  expect(await it.next()).toEqual({ value: { idle: true }, done: false });
  q.push(7);
  expect(await it.next()).toEqual({ value: { item: 7 }, done: false });
  q.close();
  expect((await it.next()).done).toBe(true);
});
