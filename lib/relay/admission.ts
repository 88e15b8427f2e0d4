/**
 * The relay's admission hook: a second opinion on a joining side, asked after the relay's own per-node limits
 * passed. Cluster mode supplies one (lib/cluster/relay-admission.ts, wired by lib/server/cluster-link.ts) so that
 * the per-peer and per-IP limits hold across every node; without one the relay's own limits are all there is.
 * The relay layer knows only this interface, never the cluster.
 */

/** One joining side of a relayed session, as the hook sees it. */
export interface RelayJoinSide {
  sessionId: string;
  side: 'a' | 'b';
  /** The joining peer's id. */
  peerId: string;
  /** The joining connection's IP address. */
  ip: string;
}

/**
 * `ok`: admitted; `unknown`: the hook could not decide (e.g. Redis did not answer), admitted on the relay's own
 * limits; `peer` / `ip`: refused, as the relay refuses its own per-peer / per-IP limit (`ERR_RELAY_LIMIT_PEER` /
 * `ERR_RELAY_LIMIT_IP`).
 */
export type RelayAdmissionResult = 'ok' | 'unknown' | 'peer' | 'ip';

/** Admits joining sides; see the module comment. */
export interface RelayAdmissionHook {
  /** Decides on a side that passed the relay's own checks. A rejection counts as `unknown`. */
  admit(side: RelayJoinSide): Promise<RelayAdmissionResult>;
  /**
   * The side's part of the session is over, whatever the reason (ended, refused after all, never paired): give
   * back what {@link admit} took. Called exactly once for every side it admitted (`ok` or `unknown`); must not
   * throw.
   */
  release(side: RelayJoinSide): void | Promise<void>;
}
