/**
 * The plan and the clock of one punch attempt: which plan the two observations allow, when each side starts so
 * that both SYNs leave together, how long the punch may take, and how long the server waits for its results.
 */
import { DIRECT_AUTH_TIMEOUT_MS, RESULT_GRACE_MS } from '../protocol/constants.js';
import type { Coordination, CoordLimits, EndVerdict } from './coord-types.js';
import { FIRST_FAMILY_TIMEOUT_MS } from './families.js';
import { planAttempt, punchHopeless } from './plan.js';
import type { AttemptPlan } from './plan.js';

/** Time left before the dial's deadline, in ms (negative once passed). */
export function remaining(c: Coordination): number {
  return c.deadline - performance.now();
}

/** The current attempt, planned: when each side starts and how long its punch may take. */
export interface TimedPlan {
  plan: AttemptPlan;
  delays: [number, number];
  timeoutMs: number;
}

/**
 * Plans the current attempt from both sides' observations, or says how the dial ends instead: no common family,
 * a pair of NATs punching cannot pass, or a deadline too close for a punch.
 */
export function timedPlan(c: Coordination, limits: CoordLimits): TimedPlan | EndVerdict {
  const [a, b] = [c.sides[0].observed!, c.sides[1].observed!];
  // Dual-stack: an untranslated IPv6 address looks reachable but usually sits behind a stateful firewall (RFC 6092)
  // that drops a SYN arriving before its own host's: the first-family attempt synchronises instead of reversing.
  const reversal = limits.reversal && !(c.firstFamily && c.attempt === 1);
  const plan = planAttempt(a, b, c.attempt, limits.maxAttempts, reversal);
  if (!plan) return { outcome: 'failed', code: 'ERR_NO_COMMON_FAMILY', message: 'The peers reach the server over different IP versions' };
  const hopeless = punchHopeless(a, b);
  if (hopeless) return { outcome: 'failed', code: 'ERR_PUNCH_UNLIKELY', message: `Punching cannot work: ${hopeless}` };
  const delays = startDelays(c, plan);
  const timeoutMs = punchTimeout(c, limits, delays);
  if (timeoutMs < 1) return { outcome: 'failed', code: 'ETIMEDOUT', message: 'The dial deadline passed' };
  return { plan, delays, timeoutMs };
}

/** Start delays that make both SYNs leave together: each side waits (max − its rtt) / 2 after the message arrives. */
function startDelays(c: Coordination, plan: AttemptPlan): [number, number] {
  if (plan.mode === 'reverse') return [0, 0];
  const rtts = c.sides.map((s) => s.peer.rttMs);
  const max = Math.max(...rtts);
  return rtts.map((r) => Math.round((max - r) / 2)) as [number, number];
}

function punchTimeout(c: Coordination, limits: CoordLimits, delays: [number, number]): number {
  // Dual-stack: the first-family attempt is kept short, the control family follows it.
  const cap = c.firstFamily && c.attempt === 1 ? Math.min(FIRST_FAMILY_TIMEOUT_MS, limits.attemptTimeoutMs) : limits.attemptTimeoutMs;
  return Math.floor(Math.min(cap, remaining(c) - Math.max(...delays)));
}

/** How long the server waits for both results of a punch: the later start, the punch, its handshake, and a grace. */
export function resultWaitMs(t: TimedPlan): number {
  return Math.max(...t.delays) + t.timeoutMs + DIRECT_AUTH_TIMEOUT_MS + RESULT_GRACE_MS;
}
