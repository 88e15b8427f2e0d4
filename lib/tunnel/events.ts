/**
 * What a tunnel reports, on either side.
 */
import type { RelayEndInfo } from '../peer/types.js';
import type { PumpResult } from '../relay/pump.js';

export type TunnelEvent =
  | { type: 'open'; peerId: string; path: string; family: 4 | 6; attempt: number; connectMs: number; waitMs: number }
  /**
   * `result.reason` is the relay's reason (with its code in `result.error`) when the relay ended the session,
   * else how the bridge ended; `relayEnd` is the relay's whole notice for a relayed tunnel.
   */
  | { type: 'close'; peerId: string; path: string; result: PumpResult; relayEnd?: RelayEndInfo }
  /**
   * A tunnel failed. `spare`: not a client's, the pool's refill of a spare connection (reported once per code).
   * `refused`: the other side refused this one (a wrong key, not allowed): retrying will not help.
   */
  | { type: 'fail'; peerId: string; code: string; message: string; spare?: boolean; refused?: boolean }
  /** A local client waits for the server or the peer to come back (at most `--wait-peer`), and why. */
  | { type: 'wait'; peerId: string; reason: string; maxWaitMs: number }
  /** A spare connection died while it waited (or failed its liveness probe) and was dropped; the pool refills. */
  | { type: 'drop'; peerId: string; reason: string };
