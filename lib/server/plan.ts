/**
 * How one attempt punches: which endpoint each side targets (route) and whether the sides synchronise (mode).
 * A pure function of what the server observed, so it can be tested without NATs.
 */
import { isIP } from 'node:net';

import type { Endpoint } from '../endpoint.js';
import type { NAT_MAPPINGS } from '../protocol/messages.js';

/** What the server learnt about one side in an attempt. */
export interface Observation {
  /** The observe connection's source address as the server saw it (the NAT mapping). */
  public: Endpoint;
  /** The addresses the side reported for its port (its own view). */
  private: Endpoint[];
  /** The side's NAT mapping as it measured it (`unknown` unless it probed). */
  mapping: (typeof NAT_MAPPINGS)[number];
}

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
 * Why punching cannot work between initiator `a` and responder `b`, or undefined when it may. A side whose NAT
 * maps per destination punches from a public port nobody can predict: the other side's SYN goes to a mapping that
 * does not lead back. Only a directly reachable other side (connection reversal: it accepts from any port) or a
 * shared NAT (LAN addresses) gets around that, so any other pair would spend the whole punch budget for nothing.
 */
export function punchHopeless(a: Observation, b: Observation): string | undefined {
  if (a.public.host === b.public.host) return undefined;
  if (a.mapping === 'dependent' && !reachable(b))
    return "the initiator's NAT maps per destination (symmetric) and the responder is not directly reachable";
  if (b.mapping === 'dependent' && !reachable(a))
    return "the responder's NAT maps per destination (symmetric) and the initiator is not directly reachable";
  return undefined;
}
