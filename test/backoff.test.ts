/**
 * lib/backoff.ts: delays grow by the factor from the minimum to the cap, and jitter only ever shortens a delay,
 * by at most its jitter fraction.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay } from '../lib/backoff.js';

describe('backoff', () => {
  it('doubles from the minimum to the cap without jitter', () => {
    const o = { minDelayMs: 100, maxDelayMs: 1000, jitter: 0 };
    expect([0, 1, 2, 3, 4, 10, 100].map((n) => backoffDelay(n, o))).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('keeps every jittered delay within [(1 - jitter) d, d]', () => {
    fc.assert(
      fc.property(fc.nat(80), fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 100_000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (n, min, extra, jitter, r) => {
        const o = { minDelayMs: min, maxDelayMs: min + extra, jitter };
        const d = backoffDelay(n, { ...o, jitter: 0 });
        const j = backoffDelay(n, o, () => r);
        expect(d).toBeLessThanOrEqual(o.maxDelayMs);
        expect(j).toBeGreaterThanOrEqual((1 - jitter) * d - 1e-9);
        expect(j).toBeLessThanOrEqual(d + 1e-9);
      }),
    );
  });

  it('counts retries and starts over after reset()', () => {
    const b = new Backoff({ minDelayMs: 10, maxDelayMs: 80, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([10, 20, 40, 80, 80]);
    expect(b.attempts).toBe(5);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(10);
  });
});
