/**
 * The leak criterion of the reliability tier (test/helpers/trend.ts): what it must flag and what it must not.
 */
import { describe, expect, it } from 'vitest';

import { trend } from './helpers/trend.js';

// Retained heap in MB after each of 8 rounds, on a heap of ~7 MB (the load test's server), with a fixed noise of
// ±0.6 MB, the spread seen between rounds on a busy machine.
const NOISE = [0.3, -0.6, 0.5, -0.2, 0.6, -0.4, 0.1, -0.5];
const rounds = (f: (round: number) => number): number[] => NOISE.map((e, r) => f(r) + e);

describe('trend (the leak criterion)', () => {
  it('flags growth that keeps rising with the rounds, even under noise', () => {
    // 200 dials per round leaking 2.5 KB each.
    expect(trend(rounds((r) => 7 + r * 0.5)).rising).toBe(true);
    expect(trend([10, 12, 14, 16]).rising).toBe(true);
  });

  it('does not flag noise, a warm-up step that then stays flat, or a slow creep', () => {
    expect(trend(rounds(() => 7)).rising).toBe(false);
    // 4 MB more after the first round (caches filled), flat since: one figure against a constant would fail here.
    expect(trend(rounds((r) => 7 + (r > 0 ? 4 : 0))).rising).toBe(false);
    // An exact line of 4 KB per round: significant, but no share of the heap worth a leak.
    expect(trend(NOISE.map((_, r) => 7 + (r * 4) / 1024)).rising).toBe(false);
    expect(trend([13, 12, 11, 10]).rising).toBe(false);
    // The load test's server, measured: a steady rise of 8 % over the run, from memory that expires on a timer.
    expect(trend([6.1, 6.4, 6.3, 6.5, 6.6, 6.7, 6.6, 6.7]).rising).toBe(false);
  });

  it('needs three samples', () => {
    expect(() => trend([1, 2])).toThrow(RangeError);
  });
});
