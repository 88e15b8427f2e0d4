/**
 * Retry delays: exponential backoff with jitter, the one helper every retry loop uses (the peer's reconnect to
 * the server, the tunnel pool's refill).
 *
 * Delay n (0-based) is `min(maxDelayMs, minDelayMs * factor^n)` scaled by a random factor in `[1 - jitter, 1]`,
 * so peers that lost the same server do not come back in lock-step.
 */

/** Shape of a backoff. */
export interface BackoffOptions {
  /** Delay of the first retry, ms. */
  minDelayMs: number;
  /** Cap of every delay, ms. */
  maxDelayMs: number;
  /** Growth per retry; default 2. */
  factor?: number;
  /** Fraction of each delay that is random, 0..1; default 0.5 (a delay lies in [d/2, d]). */
  jitter?: number;
}

/** The delay before retry `n` (0-based) under `options`; `random` is for tests. */
export function backoffDelay(n: number, options: BackoffOptions, random: () => number = Math.random): number {
  const { minDelayMs, maxDelayMs, factor = 2, jitter = 0.5 } = options;
  const base = Math.min(maxDelayMs, minDelayMs * factor ** Math.min(Math.max(0, n), 64));
  return base * (1 - jitter + jitter * random());
}

/** A backoff with its retry count: `next()` after each failure, `reset()` after a success. */
export class Backoff {
  #n = 0;

  constructor(readonly options: BackoffOptions) {}

  /** Retries so far since the last reset. */
  get attempts(): number {
    return this.#n;
  }

  /** The delay before the next retry; counts the retry. */
  next(): number {
    return backoffDelay(this.#n++, this.options);
  }

  /** Back to the first, shortest delay. */
  reset(): void {
    this.#n = 0;
  }
}
