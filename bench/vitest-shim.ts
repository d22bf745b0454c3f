/**
 * Stands in for "vitest" when the test harness runs under `node bench/run.ts`: the
 * harness needs only `inject`, for values Vitest's global setup would provide.
 */
const provided = new Map<string, unknown>();

/** What the bench provides in place of Vitest's global setup. */
export function provide(key: string, value: unknown): void {
  provided.set(key, value);
}

export function inject(key: string): any {
  if (!provided.has(key)) throw new Error(`bench: nothing provided for ${JSON.stringify(key)} (vitest-shim.ts)`);
  return provided.get(key);
}
