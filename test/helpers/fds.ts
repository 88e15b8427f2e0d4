/**
 * Open file descriptors of this process, to prove a test group leaks none.
 */
import { readdirSync } from 'node:fs';

import { until } from './poll.js';

export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * Waits (bounded) for the fd count to come back to `baseline` and returns the last count seen.
 * Closing a socket completes on a later event-loop turn, so a count taken at once can be high for a moment;
 * the bound only limits how long we wait, the caller asserts equality.
 */
export async function settledFds(baseline: number, maxWaitMs = 5000): Promise<number> {
  await until(() => openFds() === baseline, maxWaitMs);
  return openFds();
}
