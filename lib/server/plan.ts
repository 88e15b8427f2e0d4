/**
 * How one attempt punches: which endpoint each side targets (route) and whether the sides synchronise (mode).
 * A pure function of what the server observed, so it can be tested without NATs.
 */
import { isIP } from 'node:net';

import type { Endpoint } from '../endpoint.js';
import type { Observation } from '../protocol/observation.js';

export type { Observation } from '../protocol/observation.js';

/** The decision for one attempt. */
export interface AttemptPlan {
  /** `reverse`: no sync round, both punch at once (one side is reachable); `sync`: RTT-synchronised. */
  mode: 'sync' | 'reverse';
  /** `public`: NAT mappings; `private`: both behind one public IP, use LAN addresses; `hairpin`: the same, via the mappings. */
  route: 'public' | 'private' | 'hairpin';
  /** The endpoint the initiator punches towards, then the responder's. */
  remotes: [Endpoint, Endpoint];
}

/** A side is reachable when its port is not translated: it reported its public mapping as its own address. */
export function reachable(o: Observation): boolean {
  return o.private.some((p) => p.host === o.public.host && p.port === o.public.port);
}

/**
 * Plans attempt `attempt` (1-based) of `maxAttempts` between initiator `a` and responder `b`; undefined when the
 * sides reach the server over different IP versions (no common family to punch in).
 */
export function planAttempt(
  a: Observation,
  b: Observation,
  attempt: number,
  maxAttempts: number,
  reversal: boolean,
): AttemptPlan | undefined {
  const family = isIP(a.public.host);
  if (family !== isIP(b.public.host)) return undefined;
  const mode = attempt === 1 && reversal && (reachable(a) || reachable(b)) ? 'reverse' : 'sync';
  if (a.public.host !== b.public.host) return { mode, route: 'public', remotes: [b.public, a.public] };
  const pa = a.private.find((e) => isIP(e.host) === family);
  const pb = b.private.find((e) => isIP(e.host) === family);
  // Behind one NAT: LAN addresses first; the last attempt tries hairpinning through the NAT instead.
  if (pa && pb && (attempt === 1 || attempt < maxAttempts)) return { mode, route: 'private', remotes: [pb, pa] };
  return { mode, route: 'hairpin', remotes: [b.public, a.public] };
}

/**
 * True when a SYN from `x` towards `y`'s observed mapping reaches `y`. It leaves `x`'s NAT from the observed
 * mapping only if that NAT maps independently of the destination; `y`'s NAT lets it in if it takes any port of
 * the peer's host (open filtering as its probe measured: a full cone, a DMZ, a port forward; or directly
 * reachable, unless its probe found a stateful firewall filtering by port), or if `y`'s own SYN opened the
 * mapping for exactly that source, which needs both mappings to be independent of the destination.
 */
function arrives(x: Observation, y: Observation): boolean {
  if (y.filtering === 'open' || (reachable(y) && y.filtering !== 'port-dependent')) return true;
  return x.mapping !== 'dependent' && y.mapping !== 'dependent';
}

/**
 * Why punching cannot work between initiator `a` and responder `b`, or undefined when it may. A side whose NAT
 * maps per destination punches from a public port nobody can predict, and its own NAT drops the other side's SYN
 * at the mapping the server saw. One SYN that gets through is enough (the punch accepts from the peer's host on
 * any port, and direct-auth decides), so the pair is hopeless only when neither does; a shared NAT (LAN
 * addresses) always may. Any other pair would spend the whole punch budget for nothing.
 */
export function punchHopeless(a: Observation, b: Observation): string | undefined {
  if (a.public.host === b.public.host || arrives(a, b) || arrives(b, a)) return undefined;
  const side = a.mapping === 'dependent' ? 'initiator' : 'responder';
  return `the ${side}'s NAT maps per destination (symmetric) and neither side's NAT lets a SYN in from a port it has not contacted`;
}
