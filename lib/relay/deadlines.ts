/**
 * Deadlines that all have the same length (a relay's handshake window, its join window): one timer for all of
 * them instead of a `setTimeout` per connection.
 *
 * Since every deadline is `durationMs` after it was added, the order of insertion is the order of expiry: the
 * entries live in a Set (insertion-ordered, O(1) removal) and the one timer is armed for the oldest. A removed
 * head does not re-arm the timer; it fires, finds nothing due and re-arms for the new head. A callback never runs
 * before its deadline (the same guarantee as `setTimeout`), and the timer never keeps the process alive.
 */

/** A pending deadline; pass it to {@link Deadlines.cancel}. */
export interface Deadline {
  readonly at: number;
  readonly fire: () => void;
}

export class Deadlines {
  private readonly entries = new Set<Deadline>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly durationMs: number) {}

  /** Number of pending deadlines. */
  get size(): number {
    return this.entries.size;
  }

  /** Calls `fire` once `durationMs` from now, unless cancelled first. */
  add(fire: () => void): Deadline {
    const d: Deadline = { at: performance.now() + this.durationMs, fire };
    this.entries.add(d);
    if (this.timer === undefined) this.arm(this.durationMs);
    return d;
  }

  /** Cancels a deadline; a no-op once it fired or was cancelled. */
  cancel(d: Deadline | undefined): void {
    if (d !== undefined) this.entries.delete(d);
  }

  private arm(inMs: number): void {
    this.timer = setTimeout(() => this.expire(), inMs);
    this.timer.unref();
  }

  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const d of this.entries) {
      if (d.at > now) {
        // The timer may fire a fraction of a millisecond early by this clock (libuv's is cached per loop turn);
        // a callback that added a deadline has armed it already.
        if (this.timer === undefined) this.arm(Math.max(1, Math.ceil(d.at - now)));
        return;
      }
      this.entries.delete(d);
      d.fire();
    }
  }
}
