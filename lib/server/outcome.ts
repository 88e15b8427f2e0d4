/**
 * What the sides' outcomes of an attempt decide: the dial's end, or another attempt. The coordinator acts on the
 * verdict (closes observe connections, frees ports, sends `end` or the next `prepare`).
 */
import { MIN_ATTEMPT_MS } from '../protocol/constants.js';
import type { Coordination, CoordLimits, EndVerdict } from './coord-types.js';
import { remaining } from './punch-timing.js';

/** Both sides reported (or the wait for them expired): the end, or `failed-attempt` to decide as a failure. */
export function concluded(c: Coordination, limits: CoordLimits): EndVerdict | 'failed-attempt' {
  const ok = c.sides.filter((s) => s.outcome === 'ok').length;
  if (ok === 2) return { outcome: 'ok', code: 'OK', message: 'Connected' };
  // One side authenticated, the other did not: the connection works in one direction only (a NAT dropped one
  // side's packets). Like a failed attempt: the next one uses fresh ports; the last one ends the dial.
  if (ok === 1 && (c.attempt >= limits.maxAttempts || remaining(c) < MIN_ATTEMPT_MS)) return oneSided(c);
  return 'failed-attempt';
}

/** The attempt failed: the end, or `retry` when another attempt fits in the dial's attempts and deadline. */
export function afterFailure(c: Coordination, limits: CoordLimits): EndVerdict | 'retry' {
  // A side that already handed its socket over cannot take part in another attempt.
  if (c.sides.some((s) => s.committed)) return oneSided(c);
  const why = c.sides.map((s) => `${s.peer.id}: ${s.outcome ?? 'aborted'}${s.detail ? ` (${s.detail})` : ''}`).join('; ');
  if (c.path !== 'direct') return { outcome: 'failed', code: 'ERR_RELAY_FAILED', message: `The relay could not connect the peers: ${why}` };
  if (c.attempt < limits.maxAttempts && remaining(c) >= MIN_ATTEMPT_MS) return 'retry';
  if (c.attempt < limits.maxAttempts) return { outcome: 'failed', code: 'ETIMEDOUT', message: `The dial deadline passed: ${why}` };
  return { outcome: 'failed', code: 'ERR_PUNCH_FAILED', message: `All ${c.attempt} attempts failed: ${why}` };
}

/** Marks the sides that have not reported by the end of `phase` as timed out. */
export function timeOutSilent(c: Coordination, phase: 'observe' | 'punch'): void {
  for (const s of c.sides) {
    if (s.outcome === undefined) {
      s.outcome = 'timeout';
      s.detail = `no ${phase === 'punch' ? 'result' : phase} from ${s.peer.id} in time`;
    }
  }
}

function oneSided(c: Coordination): EndVerdict {
  const bad = c.sides.find((s) => s.outcome !== 'ok')!;
  return { outcome: 'failed', code: 'ERR_HANDSHAKE_FAILED', message: `${bad.peer.id}: ${bad.outcome} ${bad.detail}`.trim() };
}
