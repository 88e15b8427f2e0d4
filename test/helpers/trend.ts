/**
 * Whether a series of retained-heap figures (one per round, each after a full GC) keeps rising with the rounds:
 * the signature of a leak, told apart from a warm-up step, noise and a slow creep without comparing any single
 * figure with a constant. The line fitted through the rounds must rise significantly (its slope several standard
 * errors above zero, so noise alone does not pass) and by a material share of the heap: a quarter over the rounds
 * by default. Memory that expires on a timer also rises steadily while a run is shorter than its lifetime (the
 * relay remembers spent tokens for 60 s, longer than a bounded run), by a few percent of the heap: that is not a
 * leak, while 1.5 KB per dial is (0.3 MB a round of 200 dials, on the load test server's heap of ~6 MB).
 */
export interface Trend {
  /** Fitted growth per round, in the samples' unit. */
  slopePerRound: number;
  /** Slope divided by its standard error (Infinity for an exact rising line). */
  t: number;
  /** Fitted growth over all the rounds, as a share of the mean sample. */
  relativeGrowth: number;
  /** The samples keep rising with the rounds. */
  rising: boolean;
}

export interface TrendOptions {
  /** Smallest slope / standard error that counts (default 4). */
  minT?: number;
  /** Smallest growth over the rounds, as a share of the mean sample (default 0.25). */
  minRelativeGrowth?: number;
}

/** Least-squares trend of `samples` (at least 3) against their index. */
export function trend(samples: readonly number[], { minT = 4, minRelativeGrowth = 0.25 }: TrendOptions = {}): Trend {
  const n = samples.length;
  if (n < 3) throw new RangeError(`a trend needs at least 3 samples, got ${n}`);
  const meanX = (n - 1) / 2;
  const meanY = samples.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  samples.forEach((y, x) => {
    sxx += (x - meanX) ** 2;
    sxy += (x - meanX) * (y - meanY);
  });
  const slope = sxy / sxx;
  const sse = samples.reduce((a, y, x) => a + (y - (meanY + slope * (x - meanX))) ** 2, 0);
  const se = Math.sqrt(sse / (n - 2) / sxx);
  const t = se === 0 ? (slope > 0 ? Infinity : slope < 0 ? -Infinity : 0) : slope / se;
  const relativeGrowth = meanY === 0 ? 0 : (slope * (n - 1)) / meanY;
  return { slopePerRound: slope, t, relativeGrowth, rising: t >= minT && relativeGrowth >= minRelativeGrowth };
}
