/**
 * The relay grant of a relayed dial. A relayed dial is one attempt: both sides get a grant for the same relay
 * session (named after the coordination), sent right behind `coord`, join the relay and report their `result`
 * like a punch.
 */
import type { Coordination, RelayGrantIssuer } from './coord-types.js';
import { remaining } from './punch-timing.js';

/** Sends both sides of `c` their grant, valid until the dial's deadline. */
export function sendRelayGrants(c: Coordination, issue: RelayGrantIssuer): void {
  const [a, b] = c.sides;
  const ttlMs = Math.max(1, Math.ceil(remaining(c)));
  const grants = issue({ a: a.peer.id, b: b.peer.id, sessionId: c.key, ttlMs });
  a.peer.send(grants.a);
  b.peer.send(grants.b);
}
