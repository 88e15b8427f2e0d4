/**
 * Dual-stack on the server: a peer's observation in the IP family other than its control connection's, and the
 * order in which a dial tries the families.
 *
 * A NAT'd IPv4 mapping says nothing about a peer's IPv6 address and the reverse, so the second family is observed
 * from a connection of that family (`register-family`, authenticated with the control session's key). The
 * coordinator then runs attempt 1 of a dial in IPv6 when both sides have it and their control connections are
 * IPv4 (IPv6 first: stateful firewalls, RFC 6092, let crossing SYNs through where an IPv4 NAT may be symmetric);
 * later attempts run in the control family as before.
 */
import { familyOf, type Endpoint, type Family } from '../endpoint.js';
import type { Msg } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import type { Observation } from './plan.js';

/**
 * Longest punch of the attempt in the first family (IPv6) of a dual-stack dial: the control family runs only after
 * it, so a blocked IPv6 path costs this much, not the whole `attemptTimeoutMs`. It covers the kernel's first SYN
 * retransmission (1 s) with room for a few hundred ms of round trip.
 */
export const FIRST_FAMILY_TIMEOUT_MS = 2000;

/** What the family logic needs of a registered peer. */
export interface FamilyPeer {
  /** The control connection's family. */
  readonly controlFamily: Family;
  /** The observation in the other family, when the peer registered one. */
  readonly secondFamily: Observation | undefined;
}

/** What a session offers `register-family`. */
export interface FamilySession extends FamilyPeer {
  /** Checks the proof (the session key over a nonce not used before in this session) and uses up the nonce. */
  familyProofOk(nonce: Uint8Array, mac: Uint8Array): boolean;
  /** Records (or replaces) the observation in the other family. */
  setSecondFamily(o: Observation): void;
}

/**
 * Handles a `register-family` connection: on success answers `observed` (the source the server saw) and ends the
 * connection; otherwise fails it with `ERR_INVALID_TOKEN` (unknown id or wrong proof) or `ERR_FAMILY_MISMATCH`
 * (the connection is in the control connection's family: nothing new to observe).
 */
export function registerFamily(
  conn: FramedSocket,
  msg: Msg<'register-family'>,
  remote: Endpoint,
  session: FamilySession | undefined,
): void {
  if (!session || !session.familyProofOk(msg.nonce, msg.mac))
    return conn.fail('ERR_INVALID_TOKEN', 'Unknown peer or wrong register-family proof');
  if (familyOf(remote.host) === session.controlFamily)
    return conn.fail('ERR_FAMILY_MISMATCH', 'register-family must arrive in the family other than the control connection');
  // IPv6 is not translated (a stateful firewall at most): the address is its own mapping.
  session.setSecondFamily({ public: remote, private: msg.private, mapping: 'independent', filtering: 'unknown' });
  conn.send({ type: 'observed', endpoint: remote });
  conn.end();
}

/**
 * The family attempt 1 of a dial between `a` and `b` runs in when it is not both control connections' family: 6
 * when both have IPv6 (by their control connection or a second-family registration) and not both control
 * connections are IPv6; undefined otherwise (every attempt in the control family, as without dual-stack).
 */
export function firstFamily(a: Partial<FamilyPeer>, b: Partial<FamilyPeer>): Family | undefined {
  if (a.controlFamily === 6 && b.controlFamily === 6) return undefined;
  return has6(a) && has6(b) ? 6 : undefined;
}

function has6(p: Partial<FamilyPeer>): boolean {
  return p.controlFamily === 6 || (p.secondFamily !== undefined && familyOf(p.secondFamily.public.host) === 6);
}
