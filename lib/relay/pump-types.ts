/**
 * The interface both relay pumps implement (native: pump-native.ts, pure JS: pump-js.ts), and the checks they
 * share.
 *
 * A pump takes two connected sockets and relays bytes between them until the session ends. Both directions run
 * independently; EOF on one side becomes a half-close (FIN) on the other. A session ends:
 * - `eof`: both directions reached EOF and were propagated (both sockets then close normally);
 * - `reset` / `error`: a socket failed (`error` holds its code, `side` says whose); the other is reset;
 * - `limit-bytes`: more than `maxBytes` (both directions together) were offered;
 * - `limit-duration`: the session outlived `maxDurationMs`;
 * - `limit-idle`: no byte moved either way for `idleTimeoutMs`;
 * - `stopped`: {@link PumpSession.stop} (e.g. server shutdown).
 * Every end other than `eof` closes both sockets with a RST, so a peer that is still reading sees ECONNRESET,
 * never a clean end: a cut stream can never pass for a complete one.
 *
 * Errors thrown by `start()` (TcpPunchError): `ERR_PUMP_SOCKET` (not a connected, open TCP socket),
 * `ERR_PUMP_BUFFERED` (bytes already read into JS: the caller read past its own frames), `ERR_PUMP_BUSY`
 * (writes not yet flushed), or an errno name from the addon (`EMFILE`...). On a throw both sockets are untouched.
 */
import { Socket } from 'node:net';

import { TcpPunchError, invalidArgType } from '../errors.js';
import { validateInteger } from '../endpoint.js';

/** Why a pump session ended. */
export type PumpEndReason = 'eof' | 'error' | 'reset' | 'limit-bytes' | 'limit-duration' | 'limit-idle' | 'stopped';

/** Reasons a caller may give {@link PumpSession.stop}. */
export type PumpStopReason = 'stopped' | 'limit-bytes' | 'limit-duration' | 'limit-idle';

/** How a pump session ended. */
export interface PumpResult {
  /** Bytes relayed from A to B (heads not included). */
  bytesAToB: number;
  bytesBToA: number;
  reason: PumpEndReason;
  /** With `error` / `reset`: the errno name or code of the failure. */
  error?: string;
  /** With `error` / `reset`: whose socket failed. */
  side?: 'a' | 'b';
  durationMs: number;
}

/** Options of {@link Pump.start}. */
export interface PumpOptions {
  /** Most bytes the session may relay, both directions together; 0 or absent: no limit. */
  maxBytes?: number;
  /** Longest the session may last in ms; 0 or absent: no limit. */
  maxDurationMs?: number;
  /** Longest the session may go without moving a byte either way, in ms; 0 or absent: no limit. */
  idleTimeoutMs?: number;
  /** Bytes sent to A before anything relayed (the relay's `relay-paired` frame); not counted. At most 64 KiB. */
  headA?: Uint8Array;
  /** Bytes sent to B before anything relayed. */
  headB?: Uint8Array;
  /**
   * Called once with the result when the session ends, just before `done` resolves. A caller holding thousands
   * of sessions uses it instead of `done`, which the native pump then never makes: no promise per session.
   */
  onEnd?: (result: PumpResult) => void;
}

/** A running session. */
export interface PumpSession {
  /** Unique among the pump's sessions. */
  readonly id: number;
  /** Resolves once both sockets are closed; never rejects. */
  readonly done: Promise<PumpResult>;
  /** Ends the session with `reason` (default `stopped`); a no-op once it has ended. */
  stop(reason?: PumpStopReason): void;
}

/** Counters of a pump; the pool fields are 0 for the JS pump. */
export interface PumpStats {
  kind: 'native' | 'js';
  /** Sessions started and not yet done. */
  sessions: number;
  /** Directions waiting for a pipe or buffer to come back (native; only when even the dry-pool copy lacks memory). */
  waiting: number;
  pipesIdle: number;
  pipesInUse: number;
  buffersIdle: number;
  buffersInUse: number;
}

/** A relay pump. */
export interface Pump {
  readonly kind: 'native' | 'js';
  /**
   * Relays between `a` and `b` until the session ends. The pump owns both sockets from now on: the native pump
   * destroys the JS sockets at once (it works on duplicated fds), the JS pump uses them; either way the caller must
   * have removed its own listeners and must not read, write or destroy them any more.
   */
  start(a: Socket, b: Socket, options?: PumpOptions): PumpSession;
  stats(): PumpStats;
}

const MAX_HEAD = 65536;

/** @internal Validates options; returns them with defaults. */
export function checkPumpOptions(options: PumpOptions): Required<Omit<PumpOptions, 'headA' | 'headB' | 'onEnd'>> & PumpOptions {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
  const { maxBytes = 0, maxDurationMs = 0, idleTimeoutMs = 0, headA, headB, onEnd } = options;
  if (onEnd !== undefined && typeof onEnd !== 'function') throw invalidArgType('options.onEnd', 'a function', onEnd);
  validateInteger(maxBytes, 'options.maxBytes', 0, Number.MAX_SAFE_INTEGER);
  validateInteger(maxDurationMs, 'options.maxDurationMs', 0, Number.MAX_SAFE_INTEGER);
  validateInteger(idleTimeoutMs, 'options.idleTimeoutMs', 0, 2 ** 31 - 1);
  for (const [name, head] of [['options.headA', headA], ['options.headB', headB]] as const) {
    if (head === undefined) continue;
    if (!(head instanceof Uint8Array)) throw invalidArgType(name, 'a Buffer or Uint8Array', head);
    validateInteger(head.length, `${name}.length`, 0, MAX_HEAD);
  }
  return { maxBytes, maxDurationMs, idleTimeoutMs, headA, headB, onEnd };
}

/** @internal Throws unless both are open, connected sockets with nothing buffered in JS either way. */
export function checkPumpSockets(a: unknown, b: unknown): asserts a is Socket {
  for (const [name, s] of [['a', a], ['b', b]] as const) {
    if (!(s instanceof Socket)) throw invalidArgType(name, 'a net.Socket', s);
    if (s.destroyed || s.connecting || s.pending || !s.readable || !s.writable) {
      throw new TcpPunchError('ERR_PUMP_SOCKET', `socket ${name} is not an open, connected socket`);
    }
    if (s.readableLength > 0) {
      throw new TcpPunchError('ERR_PUMP_BUFFERED', `socket ${name} has ${s.readableLength} bytes read into JS`);
    }
    if (s.writableLength > 0) {
      throw new TcpPunchError('ERR_PUMP_BUSY', `socket ${name} has ${s.writableLength} bytes not yet written`);
    }
  }
  if (a === b) throw new TcpPunchError('ERR_PUMP_SOCKET', 'a and b are the same socket');
}

/** @internal 'reset' for the errors a peer's RST or close produces, 'error' for the rest. */
export function classifyError(code: string | undefined): 'reset' | 'error' {
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED' ? 'reset' : 'error';
}
