/**
 * The shapes of coordination: what the coordinator sees of a peer, what it sends and counts, and the state of one
 * dial in flight. Types only, so that each of the coordinator's parts (admission, timing, outcome) can take them
 * without importing the coordinator.
 */
import type { Family } from '../endpoint.js';
import type { ATTEMPT_OUTCOMES, Message, Msg, PATHS, ROLES } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import type { FamilyPeer } from './families.js';
import type { ResolvedOptions } from './options.js';
import type { Observation } from './plan.js';

export type Role = (typeof ROLES)[number];
export type Outcome = (typeof ATTEMPT_OUTCOMES)[number];
export type Path = (typeof PATHS)[number];
export type PortKind = Msg<'prepare'>['port'];

/**
 * Issues the relay grants of a relayed dial: the `relay-token` messages for the initiator (`a`) and the responder
 * (`b`) of session `sessionId`, valid for `ttlMs`. Absent when the server runs no relay.
 */
export type RelayGrantIssuer = (pair: { a: string; b: string; sessionId: string; ttlMs: number }) => { a: Message; b: Message };

/** A `coord` message before its pair key is wrapped for the receiving peer. */
export type CoordDraft = Omit<Msg<'coord'>, 'pairKey'>;

/** A registered peer as the coordinator sees it (a local control session, or a proxy of one on another node). */
export interface CoordPeer extends Partial<FamilyPeer> {
  readonly id: string;
  send(msg: Message): boolean;
  /** Sends `coord` with `pairKey` wrapped for this peer (by whoever holds its session key). */
  sendCoord(msg: CoordDraft, pairKey: Uint8Array): boolean;
  /** The control connection's mapping when its port is reusable (the peer can punch from it), else undefined. */
  readonly warm: Observation | undefined;
  /** Round-trip estimate to the peer in ms (0: unknown). */
  readonly rttMs: number;
}

/** The messages a peer sends to the coordinator. */
export type CoordRequest = Msg<'connect'> | Msg<'cancel'> | Msg<'result'> | Msg<'release'>;

/** How a coordinated dial ended: its path, outcome, code, and the time from the request to the end. */
export interface CoordinationEnd {
  path: Path;
  outcome: 'ok' | 'failed' | 'cancelled';
  code: string;
  durationMs: number;
}

/** Counters the coordinator maintains. */
export interface CoordStats {
  started: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  attempts: number;
  /** Attempts whose every side punched from its warm port (no observe round). */
  warmAttempts: number;
}

/** One side of a dial in flight. */
export interface Side {
  readonly peer: CoordPeer;
  readonly role: Role;
  token: Buffer;
  port: PortKind;
  observed: (Observation & { conn?: FramedSocket }) | undefined;
  outcome: Outcome | undefined;
  /** The side handed its socket over without waiting for `end ok`. */
  committed: boolean;
  detail: string;
}

/** A dial in flight. */
export interface Coordination {
  readonly key: string;
  readonly id: Buffer;
  readonly sides: readonly [Side, Side];
  readonly path: Path;
  readonly deadline: number;
  readonly startedAt: number;
  attempt: number;
  phase: 'observe' | 'punch' | 'ended';
  nonce: Buffer;
  timer: NodeJS.Timeout | undefined;
  /** Dual-stack: attempt 1 runs in this family (fresh ports) instead of the control family. */
  readonly firstFamily: Family | undefined;
}

/** The server options the coordinator reads. */
export type CoordLimits = Pick<
  ResolvedOptions,
  | 'maxPendingPerPeer'
  | 'maxCoordinations'
  | 'maxAttempts'
  | 'attemptTimeoutMs'
  | 'defaultDialTimeoutMs'
  | 'maxDialTimeoutMs'
  | 'handshakeTimeoutMs'
  | 'reversal'
>;

/** How a dial ends: the outcome, code and message of its `end`. */
export interface EndVerdict {
  outcome: 'ok' | 'failed' | 'cancelled';
  code: string;
  message: string;
}

