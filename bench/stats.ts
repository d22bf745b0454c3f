/** Percentiles by nearest rank: with 20 samples p99 is the largest, p50 the 10th. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export interface Summary {
  n: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  minMs: number;
  maxMs: number;
}

export function summarize(samples: readonly number[]): Summary {
  return {
    n: samples.length,
    p50Ms: round(percentile(samples, 50)),
    p90Ms: round(percentile(samples, 90)),
    p99Ms: round(percentile(samples, 99)),
    minMs: round(samples.length ? Math.min(...samples) : Number.NaN),
    maxMs: round(samples.length ? Math.max(...samples) : Number.NaN),
  };
}

/** Two decimals: enough for milliseconds and ratios, short in JSON. */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function ratio(a: number, b: number): number {
  return b > 0 ? round(a / b) : Number.NaN;
}

export const MB = 1024 * 1024;
