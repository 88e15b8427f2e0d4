/**
 * Opening a dial: whether the server takes it (its limits, the target's presence), the new coordination's state,
 * and the `coord` message each side receives.
 */
import { random } from '../protocol/crypto.js';
import type { Msg } from '../protocol/messages.js';
import type { Coordination, CoordDraft, CoordLimits, CoordPeer, Role, Side } from './coord-types.js';
import { firstFamily } from './families.js';
import type { TimedPlan } from './punch-timing.js';

/** Why `from`'s dial to `target` is refused (the `reject` code and message), or undefined when it is admitted. */
export function refusal(
  from: CoordPeer,
  target: CoordPeer | undefined,
  msg: Msg<'connect'>,
  limits: CoordLimits,
  pending: (peer: CoordPeer) => number,
  inFlight: number,
): { code: string; message: string } | undefined {
  if (!target) return { code: 'ERR_PEER_OFFLINE', message: `Peer ${msg.target} is not online` };
  if (pending(from) >= limits.maxPendingPerPeer)
    return { code: 'ERR_TOO_MANY_PENDING', message: `At most ${limits.maxPendingPerPeer} dials may be pending per peer` };
  if (pending(target) >= limits.maxPendingPerPeer) return { code: 'ERR_PEER_BUSY', message: `Peer ${msg.target} has too many pending dials` };
  if (inFlight >= limits.maxCoordinations) return { code: 'ERR_SERVER_BUSY', message: 'Too many dials in flight' };
  return undefined;
}

/** The dial's timeout: the request's, capped by the server (0 asks for the server's default). */
export function dialTimeout(msg: Msg<'connect'>, limits: CoordLimits): number {
  return msg.timeoutMs === 0 ? limits.defaultDialTimeoutMs : Math.min(msg.timeoutMs, limits.maxDialTimeoutMs);
}

/** The key a coordination is found by: its coordId in hex (read through a view: no copy of the id). */
export function coordKey(coordId: Uint8Array): string {
  return Buffer.from(coordId.buffer, coordId.byteOffset, coordId.byteLength).toString('hex');
}

/**
 * A side's observe token before its first observe phase: every attempt that observes draws one (startAttempt), and a
 * warm attempt folded into `coord` observes nothing. An empty token matches no 16-byte `observe.token`.
 */
const NO_TOKEN = Buffer.alloc(0);

/** A new coordination of `msg` from `from` (the initiator) to `target`, before its first attempt. */
export function newCoordination(from: CoordPeer, target: CoordPeer, msg: Msg<'connect'>, timeoutMs: number): Coordination {
  const id = random(16);
  const side = (peer: CoordPeer, role: Role): Side => ({
    peer, role, token: NO_TOKEN, port: 'fresh', observed: undefined, outcome: undefined, committed: false, detail: '',
  });
  return {
    key: coordKey(id),
    id,
    sides: [side(from, 'initiator'), side(target, 'responder')],
    path: msg.path,
    deadline: performance.now() + timeoutMs,
    startedAt: performance.now(),
    attempt: 0,
    phase: 'observe',
    nonce: random(16),
    timer: undefined,
    firstFamily: firstFamily(from, target),
  };
}

/**
 * The `coord` message of side `i`: the dial's terms, and, when attempt 1 is folded into it (both sides warm),
 * that attempt's punch instruction.
 */
export function coordDraft(c: Coordination, i: 0 | 1, msg: Msg<'connect'>, timeoutMs: number, fold?: TimedPlan): CoordDraft {
  const s = c.sides[i];
  return {
    type: 'coord',
    reqId: s.role === 'initiator' ? msg.reqId : 0,
    coordId: c.id,
    peer: c.sides[1 - i]!.peer.id,
    role: s.role,
    path: msg.path,
    timeoutMs,
    link: msg.link,
    attempt: fold ? c.attempt : 0,
    nonce: c.nonce,
    mode: fold?.plan.mode ?? 'sync',
    route: fold?.plan.route ?? 'public',
    remote: fold ? [fold.plan.remotes[i]!] : [],
    delayMs: fold?.delays[i] ?? 0,
    punchTimeoutMs: fold?.timeoutMs ?? 0,
  };
}
