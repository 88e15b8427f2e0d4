/**
 * Polling until a condition holds, bounded: the one "wait until" of the tests. The bound only limits how long a
 * test waits for something that should happen; the caller asserts the outcome.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `cond` every `intervalMs` until it holds or `maxWaitMs` passed; resolves its last value. */
export async function until(cond: () => boolean | Promise<boolean>, maxWaitMs = 8000, intervalMs = 20): Promise<boolean> {
  const end = Date.now() + maxWaitMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(intervalMs);
  }
  return cond();
}
