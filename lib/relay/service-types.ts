/**
 * The relay service's public types: its options, the sessions it reports and its counters (relay-service.ts).
 */
import type { RelayMsg } from '../protocol/messages.js';
import type { RelayAdmissionHook } from './admission.js';
import type { RelayEndReason } from './frames.js';
import type { RelayLimits } from './limits.js';
import type { PumpKind } from './pump.js';
import type { Pump, PumpStats } from './pump-types.js';
import type { RelayTokens } from './tokens.js';

/** Options of a `RelayService`. */
export interface RelayServiceOptions {
  /** Secret to sign and check tokens with (at least 16 bytes); or pass `tokens`. */
  secret?: Uint8Array | string;
  /** A token authority to share, e.g. with a relay in another process using the same secret. */
  tokens?: RelayTokens;
  /** Lifetime of issued tokens in ms when `secret` is given; default 60000. */
  tokenTtlMs?: number;
  limits?: Partial<RelayLimits>;
  /** The pump, or which kind to pick; default 'auto' (native where available). */
  pump?: Pump | PumpKind;
  /** Delivers a relay message (`relay-end`) to a peer's control connection; the rendezvous server wires this. */
  notify?: (peerId: string, msg: RelayMsg) => void;
  /** A second opinion on each joining side after the relay's own limits (cluster mode: limits across nodes). */
  admission?: RelayAdmissionHook;
  /** How long a refused connection may linger for its peer to read the error frame; default 1000 ms. */
  lingerMs?: number;
}

/** A session that started relaying. */
export interface RelaySessionInfo {
  sessionId: string;
  /** Peer ids of sides a and b. */
  a: string;
  b: string;
}

/** How a session ended (or why it never started). */
export interface RelaySessionEnd extends RelaySessionInfo {
  reason: RelayEndReason;
  /** The code reported to the peers: '' for `eof`, else an ERR_* or errno code. */
  code: string;
  bytesAToB: number;
  bytesBToA: number;
  durationMs: number;
}

/** Counters of a `RelayService`. */
export interface RelayStats {
  pending: number;
  active: number;
  started: number;
  /** Sessions ended, by reason. */
  ended: Record<string, number>;
  /** Refused joins, by code. */
  rejected: Record<string, number>;
  pump: PumpStats;
}

/** Events of a `RelayService`. */
export interface RelayServiceEvents {
  session: [info: RelaySessionInfo];
  'session-end': [end: RelaySessionEnd];
  rejected: [info: { code: string; remote: string; sessionId?: string }];
}
