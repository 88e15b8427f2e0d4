// The relay's shared deadline timer (lib/relay/deadlines.ts), on fake timers: order, cancellation, never early.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { Deadlines } from '../lib/relay/deadlines.js';

describe('Deadlines', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires each deadline once, in order, never before its time, with one timer for all', () => {
    const d = new Deadlines(100);
    const fired: [string, number][] = [];
    const t0 = performance.now();
    d.add(() => fired.push(['a', performance.now() - t0]));
    vi.advanceTimersByTime(30);
    d.add(() => fired.push(['b', performance.now() - t0]));
    vi.advanceTimersByTime(30);
    d.add(() => fired.push(['c', performance.now() - t0]));
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(39);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([['a', 100]]);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([['a', 100], ['b', 130], ['c', 160]]);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a cancelled deadline never fires, the others still do, and cancelling twice is harmless', () => {
    const d = new Deadlines(50);
    const fired: string[] = [];
    const a = d.add(() => fired.push('a'));
    vi.advanceTimersByTime(10);
    const b = d.add(() => fired.push('b'));
    d.add(() => fired.push('c'));
    d.cancel(a);
    d.cancel(a);
    d.cancel(b);
    d.cancel(undefined);
    expect(d.size).toBe(1);
    vi.advanceTimersByTime(49);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['c']);
  });

  it('a deadline added by a firing callback gets its full length', () => {
    const d = new Deadlines(20);
    const fired: number[] = [];
    const t0 = performance.now();
    const again = (): void => {
      fired.push(performance.now() - t0);
      if (fired.length < 3) d.add(again);
    };
    d.add(again);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual([20, 40, 60]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
