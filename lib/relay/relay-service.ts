/**
 * RelayService: pairs the two holders of a relay session's tokens and pumps bytes between them.
 *
 * A joiner's connection starts with a `relay-join` frame carrying its token (the rendezvous server reads that frame
 * and hands the socket over with {@link RelayService.handleJoin}; a standalone relay uses relay-server.ts). The
 * first side waits, reading nothing but checking that it sends nothing, until the second side of the same session
 * joins; then each gets a `relay-paired` frame and the pump (native by default) owns both sockets. Everything
 * else is refused with an `error` frame and the connection closed:
 *
 * - `ERR_MALFORMED_FRAME`: the join frame's body is invalid;
 * - `ERR_RELAY_PROTOCOL`: bytes arrived before `relay-paired` (a client must wait for it);
 * - `ERR_RELAY_TOKEN_INVALID` / `_EXPIRED` / `_REUSED`: see tokens.ts;
 * - `ERR_RELAY_TOKEN_MISMATCH`: the token does not complete the waiting side (same side twice, other peers) or its
 *   session is already paired;
 * - `ERR_RELAY_LIMIT_SESSIONS` / `_PEER` / `_IP`: a limit on sessions at once;
 * - `ERR_RELAY_JOIN_TIMEOUT`: the second side did not come within `joinTimeoutMs`;
 * - `ERR_RELAY_PEER_GONE`: the first side left before the second came; `ERR_RELAY_SESSION_ENDED`: too late;
 * - `ERR_RELAY_BUSY` (token memory full), `ERR_RELAY_CLOSED` (shutting down), `ERR_RELAY_INTERNAL` (pump failed).
 *
 * How a limit reaches both peers: once the pump owns the bytes no frame can be added to the stream, so the relay
 * (1) ends the session with a RST on both sockets rather than a FIN, so a reader never takes a cut stream for a
 * complete one (Node may still report a RST that arrives behind unread data as a plain 'end': libuv treats
 * POLLHUP after a partial read as EOF), and (2) always tells both peers why, on their control connections: for
 * every session that ends or fails to start it calls `notify(peerId, relay-end message)` for both peer ids, with
 * the reason, its code and the byte counts, and emits `session-end`. The rendezvous server wires `notify` to its
 * control connections; the Peer API attaches the reason to the relayed stream.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

import { TcpPunchError, invalidArgType } from '../errors.js';
import { unmapAddress } from '../protocol/fields.js';
import type { Endpoint } from '../protocol/fields.js';
import type { RawFrame } from '../protocol/frame.js';
import { encodeMessage } from '../protocol/messages.js';
import type { RelayMsg } from '../protocol/messages.js';
import type { RelayAdmissionHook, RelayAdmissionResult } from './admission.js';
import { type Deadline, Deadlines } from './deadlines.js';
import { JOIN_FIRST_FRAME, type RelayEndReason, type RelayJoin, decodeRelay, encodePairedFrames, relayMessage } from './frames.js';
import { type FirstFrameResult, readFirstFrame } from './join-reader.js';
import { type JoinLeg, SocketLeg } from './legs.js';
import { NativeLeg } from './native-legs.js';
import { Counter, type RelayLimits, Tombstones, resolveLimits } from './limits.js';
import type { RelayServiceEvents, RelayServiceOptions, RelaySessionEnd, RelaySessionInfo, RelayStats } from './service-types.js';
import { choosePump, nativePump } from './pump.js';
import type { Pump, PumpOptions, PumpResult, PumpSession } from './pump-types.js';
import { type RelayTokenClaims, type RelayTokenPair, RelayTokens } from './tokens.js';

export type { RelayServiceEvents, RelayServiceOptions, RelaySessionEnd, RelaySessionInfo, RelayStats } from './service-types.js';

interface Joiner {
  leg: JoinLeg;
  claims: RelayTokenClaims;
  ip: string;
}

interface Pending extends Joiner {
  deadline: Deadline;
  detach: () => void;
}

/**
 * A session being pumped. Held for its whole life, so it keeps only what its end needs: side a's claims (the
 * session id and both peer ids) and both addresses, never the sockets, which the pump owns (the native pump has
 * destroyed the JS ones; keeping them would pin two dead net.Sockets per idle session).
 */
interface Active {
  claims: RelayTokenClaims;
  ipA: string;
  ipB: string;
  session: PumpSession;
}

const EMPTY = Buffer.alloc(0);
const noop = (): void => {};
const CODE_OF: Partial<Record<RelayEndReason, string>> = {
  'limit-bytes': 'ERR_RELAY_LIMIT_BYTES',
  'limit-duration': 'ERR_RELAY_LIMIT_DURATION',
  'limit-idle': 'ERR_RELAY_LIMIT_IDLE',
  stopped: 'ERR_RELAY_STOPPED',
};

/** The relay. */
export class RelayService extends EventEmitter<RelayServiceEvents> {
  readonly tokens: RelayTokens;
  readonly limits: RelayLimits;
  readonly pump: Pump;
  /**
   * Delivers `relay-end` messages to peers' control connections (see the module comment); may be set after
   * construction, e.g. once the rendezvous server exists.
   */
  notify: ((peerId: string, msg: RelayMsg) => void) | undefined;
  /** See {@link RelayAdmissionHook}; may be set after construction, before the first join (cluster mode sets it once joined). */
  admission: RelayAdmissionHook | undefined;
  private readonly lingerMs: number;
  private readonly pending = new Map<string, Pending>();
  private readonly active = new Map<string, Active>();
  private readonly perPeer = new Counter();
  private readonly perIp = new Counter();
  private readonly tombstones = new Tombstones();
  /** The join window of every waiting first side: one timer, not one per session. */
  private readonly joinDeadlines: Deadlines;
  /** Handshake windows of {@link accept}, by length (listenRelay uses one). */
  private readonly handshakeDeadlines = new Map<number, Deadlines>();
  private readonly counts = { started: 0, ended: {} as Record<string, number>, rejected: {} as Record<string, number> };
  private closing = false;

  constructor(options: RelayServiceOptions) {
    super();
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
    const { secret, tokens, tokenTtlMs, limits, pump = 'auto', notify, admission, lingerMs = 1000 } = options;
    if (tokens !== undefined && !(tokens instanceof RelayTokens)) throw invalidArgType('options.tokens', 'RelayTokens', tokens);
    if (tokens === undefined && secret === undefined) throw invalidArgType('options.secret', 'a secret (or options.tokens)', secret);
    if (notify !== undefined && typeof notify !== 'function') throw invalidArgType('options.notify', 'a function', notify);
    if (admission !== undefined && (typeof admission?.admit !== 'function' || typeof admission.release !== 'function'))
      throw invalidArgType('options.admission', 'an object with admit() and release()', admission);
    this.tokens = tokens ?? new RelayTokens({ secret: secret!, ...(tokenTtlMs === undefined ? {} : { ttlMs: tokenTtlMs }) });
    this.limits = resolveLimits(limits);
    this.joinDeadlines = new Deadlines(this.limits.joinTimeoutMs);
    this.pump = typeof pump === 'string' ? choosePump(pump) : pump;
    this.notify = notify;
    this.admission = admission;
    this.lingerMs = lingerMs;
  }

  /**
   * The rendezvous server's relay hooks (`ServerOptions.relay`): joins on the server's own port come here.
   * Control messages (`relay-token-request`) are the server's to answer, since only it knows who is online.
   */
  hooks(): { onRelayJoin: (socket: Socket, join: RelayMsg, rest: Buffer, info: { remote: Endpoint }) => void } {
    return { onRelayJoin: (socket, join, rest, info) => this.handleJoin(socket, join, rest, info) };
  }

  /** Issues the two tokens of a new session between peers `a` and `b` (for the rendezvous server). */
  issueTokens(pair: { a: string; b: string; ttlMs?: number; sessionId?: string }): RelayTokenPair {
    return this.tokens.issue(pair);
  }

  /** The `relay-token` messages to send to peers `a` and `b` on their control connections. */
  grants(issued: RelayTokenPair, pair: { a: string; b: string }, options: { reqId?: number; relay?: Endpoint[] } = {}) {
    const { reqId = 0, relay = [] } = options;
    const expiresInMs = Math.max(0, issued.expiresAt - Date.now());
    const grant = (side: 'a' | 'b', token: string, peer: string): RelayMsg =>
      relayMessage('relay-token', { reqId, sessionId: issued.sessionId, side, peer, token, expiresInMs, relay });
    return { a: grant('a', issued.a, pair.b), b: grant('b', issued.b, pair.a) };
  }

  /**
   * Takes over a connection whose first frame was `relay-join`. `rest` holds bytes the caller read after that frame
   * (there must be none: a client waits for `relay-paired`). The relay owns the socket from now on.
   */
  handleJoin(socket: Socket, join: RelayMsg | RawFrame | RelayJoin, rest: Buffer = EMPTY, info: { remote?: Endpoint } = {}): void {
    this.join(new SocketLeg(socket, unmapAddress(info.remote?.host ?? socket.remoteAddress)), join, rest);
  }

  /**
   * @internal A connection's first frame, read by whoever accepted it (listenRelay's native listener): the join,
   * or why there is none (the connection is then refused with that code).
   */
  handleFirst(leg: JoinLeg, r: FirstFrameResult): void {
    if ('frame' in r) this.join(leg, r.frame, r.rest);
    else this.refuse(leg, r.code, r.message);
  }

  private join(leg: JoinLeg, join: RelayMsg | RawFrame | RelayJoin, rest: Buffer): void {
    if (this.closing) return this.refuse(leg, 'ERR_RELAY_CLOSED', 'The relay is shutting down');
    let token: string;
    try {
      token = 'token' in join ? join.token : decodeJoin(join);
    } catch (err) {
      return this.refuse(leg, 'ERR_MALFORMED_FRAME', (err as Error).message);
    }
    let claims: RelayTokenClaims;
    try {
      claims = this.tokens.verify(token);
    } catch (err) {
      return this.refuse(leg, (err as TcpPunchError).code, (err as Error).message);
    }
    const now = Date.now();
    const sid = claims.sid;
    const ip = leg.ip;
    if (this.tokens.isUsed(claims)) return this.refuse(leg, 'ERR_RELAY_TOKEN_REUSED', 'The relay token was already used', sid);
    const dead = this.tombstones.get(sid, now);
    if (dead) return this.refuse(leg, dead, 'This relay session is over', sid);
    if (this.active.has(sid)) return this.refuse(leg, 'ERR_RELAY_TOKEN_MISMATCH', 'This relay session is already paired', sid);

    const first = this.pending.get(sid);
    if (first && (first.claims.side === claims.side || first.claims.peer !== claims.other || first.claims.other !== claims.peer))
      return this.refuse(leg, 'ERR_RELAY_TOKEN_MISMATCH', 'The token does not complete this relay session', sid);
    const limit =
      rest.length > 0 || leg.sentData
        ? 'ERR_RELAY_PROTOCOL'
        : !first && this.pending.size + this.active.size >= this.limits.maxSessions
        ? 'ERR_RELAY_LIMIT_SESSIONS'
        : this.perPeer.get(claims.peer) >= this.limits.maxSessionsPerPeer
          ? 'ERR_RELAY_LIMIT_PEER'
          : this.perIp.get(ip) >= this.limits.maxSessionsPerIp
            ? 'ERR_RELAY_LIMIT_IP'
            : undefined;
    if (limit) {
      // Ends the session for both sides: the one waiting (if any) is refused too, a late one finds the tombstone.
      const why = limit === 'ERR_RELAY_PROTOCOL' ? 'Data arrived before relay-paired' : 'Relay limit reached';
      this.refuse(leg, limit, why, sid);
      if (first) this.dropPending(first, limit, 'rejected');
      else this.ended(claims, limit, 'rejected');
      return;
    }
    try {
      this.tokens.consume(claims);
    } catch (err) {
      return this.refuse(leg, (err as TcpPunchError).code, (err as Error).message, sid);
    }
    this.perPeer.add(claims.peer);
    this.perIp.add(ip);
    const joiner: Joiner = { leg, claims, ip };
    if (this.admission) {
      // Burnt and counted before asking, so a copy of this join arriving meanwhile is refused as reused.
      const side = { sessionId: sid, side: claims.side, peerId: claims.peer, ip };
      void this.admission.admit(side).catch(() => 'unknown' as const).then((r) => this.admitted(joiner, r));
    } else if (first) this.pair(first, joiner);
    else this.wait(joiner);
  }

  /** The admission hook's answer for a side that passed the relay's own checks; the world may have moved since. */
  private admitted(joiner: Joiner, r: RelayAdmissionResult): void {
    const { leg, claims, ip } = joiner;
    const sid = claims.sid;
    const first = this.pending.get(sid);
    const over = this.tombstones.get(sid, Date.now());
    const code =
      r === 'peer' ? 'ERR_RELAY_LIMIT_PEER'
      : r === 'ip' ? 'ERR_RELAY_LIMIT_IP'
      : this.closing ? 'ERR_RELAY_CLOSED'
      : leg.gone ? 'ERR_RELAY_PEER_GONE'
      : leg.sentData ? 'ERR_RELAY_PROTOCOL'
      : !over && !first && this.pending.size + this.active.size >= this.limits.maxSessions ? 'ERR_RELAY_LIMIT_SESSIONS' // others placed meanwhile
      : over ?? (first && (first.claims.side === claims.side || first.claims.peer !== claims.other || first.claims.other !== claims.peer)
          ? 'ERR_RELAY_TOKEN_MISMATCH' // the other side arrived while we waited: the check handleJoin could not make
          : undefined);
    if (!code) return first ? this.pair(first, joiner) : this.wait(joiner);
    if (r === 'peer' || r === 'ip') {
      this.perPeer.remove(claims.peer); // a refusal holds nothing in the hook: give back only the relay's own count
      this.perIp.remove(ip);
    } else this.release(sid, claims.side, claims.peer, ip);
    this.refuse(leg, code, r === 'peer' || r === 'ip' ? 'Relay limit reached (cluster-wide)' : 'The relay session could not start', sid);
    if (over || code === 'ERR_RELAY_TOKEN_MISMATCH') return; // the session already ended, or is someone else's
    // Ends the session for both sides, as the relay's own refusals do.
    const reason: RelayEndReason = code === 'ERR_RELAY_CLOSED' ? 'stopped' : code === 'ERR_RELAY_PEER_GONE' ? 'peer-gone' : 'rejected';
    if (first) this.dropPending(first, code, reason);
    else this.ended(claims, code, reason);
  }

  /**
   * Reads the `relay-join` frame itself, then {@link handleJoin}: for a relay listening on a port of its own.
   * A connection that sends no valid join frame within `timeoutMs` is refused.
   */
  accept(socket: Socket, options: { timeoutMs?: number } = {}): void {
    socket.on('error', noop);
    const leg = new SocketLeg(socket, unmapAddress(socket.remoteAddress));
    const timeoutMs = options.timeoutMs ?? 5000;
    let deadlines = this.handshakeDeadlines.get(timeoutMs);
    if (!deadlines) this.handshakeDeadlines.set(timeoutMs, (deadlines = new Deadlines(timeoutMs)));
    readFirstFrame(
      socket,
      { ...JOIN_FIRST_FRAME, deadlines },
      (frame, rest) => this.join(leg, frame, rest),
      (code, message) => this.refuse(leg, code, message),
    );
  }

  stats(): RelayStats {
    const { started, ended, rejected } = this.counts;
    return { pending: this.pending.size, active: this.active.size, started, ended: { ...ended }, rejected: { ...rejected }, pump: this.pump.stats() };
  }

  /** Refuses new joins, fails waiting ones and stops every session (reason `stopped`); resolves when all ended. */
  async close(): Promise<void> {
    this.closing = true;
    for (const p of [...this.pending.values()]) this.dropPending(p, 'ERR_RELAY_CLOSED', 'stopped');
    const all = [...this.active.values()];
    for (const a of all) a.session.stop('stopped');
    await Promise.all(all.map((a) => a.session.done));
  }

  private wait(joiner: Joiner): void {
    const pending: Pending = {
      ...joiner,
      deadline: this.joinDeadlines.add(() => this.dropPending(pending, 'ERR_RELAY_JOIN_TIMEOUT', 'join-timeout')),
      detach: noop,
    };
    // Watching only to notice a close: a well-behaved first side sends nothing until relay-paired.
    const unwatch = joiner.leg.watch(
      () => this.dropPending(pending, 'ERR_RELAY_PROTOCOL', 'rejected', 'Data arrived before relay-paired'),
      () => this.dropPending(pending, 'ERR_RELAY_PEER_GONE', 'peer-gone'),
    );
    pending.detach = () => {
      this.joinDeadlines.cancel(pending.deadline);
      unwatch();
    };
    this.pending.set(joiner.claims.sid, pending);
  }

  private pair(first: Pending, second: Joiner): void {
    first.detach();
    this.pending.delete(first.claims.sid);
    const [a, b] = first.claims.side === 'a' ? [first as Joiner, second] : [second, first as Joiner];
    const sid = a.claims.sid;
    const info: RelaySessionInfo = { sessionId: sid, a: a.claims.peer, b: b.claims.peer };
    const { maxBytesPerSession: maxBytes, maxDurationMs, idleTimeoutMs } = this.limits;
    const [headA, headB] = encodePairedFrames(sid, a.claims.peer, b.claims.peer, maxBytes, maxDurationMs);
    let session: PumpSession;
    let active: Active | undefined;
    try {
      session = this.startPump(a.leg, b.leg, {
        maxBytes,
        maxDurationMs,
        idleTimeoutMs,
        headA,
        headB,
        onEnd: (r) => this.finish(active!, r), // never synchronous: a session ends on a later turn
      });
    } catch (err) {
      const code = (err as TcpPunchError).code === 'ERR_PUMP_SOCKET' ? 'ERR_RELAY_PEER_GONE' : 'ERR_RELAY_INTERNAL';
      for (const j of [a, b]) this.release(sid, j.claims.side, j.claims.peer, j.ip);
      for (const j of [a, b]) this.refuse(j.leg, code, `The relay could not start: ${(err as Error).message}`, sid);
      this.ended(a.claims, code, code === 'ERR_RELAY_PEER_GONE' ? 'peer-gone' : 'error');
      return;
    }
    this.counts.started++;
    active = { claims: a.claims, ipA: a.ip, ipB: b.ip, session };
    this.active.set(sid, active);
    this.emit('session', info);
  }

  /**
   * Two legs the addon holds go to the native pump as they are, fds and all: no net.Socket is ever made for them.
   * Anything else becomes sockets for the pump's start().
   */
  private startPump(a: JoinLeg, b: JoinLeg, options: PumpOptions): PumpSession {
    if (a instanceof NativeLeg && b instanceof NativeLeg && this.pump === nativePump) {
      const session = nativePump.startAdopted(a.release(), b.release(), options);
      a.adopted();
      b.adopted();
      return session;
    }
    return this.pump.start(a.socket(), b.socket(), options);
  }

  private finish(active: Active, r: PumpResult): void {
    const { claims } = active;
    this.active.delete(claims.sid);
    this.release(claims.sid, 'a', claims.peer, active.ipA); // active.claims are side a's
    this.release(claims.sid, 'b', claims.other, active.ipB);
    const code = r.reason === 'eof' ? '' : (CODE_OF[r.reason] ?? r.error ?? 'ERR_RELAY_INTERNAL');
    this.ended(claims, code, r.reason, r);
  }

  /** Removes a waiting first side, refuses its connection with `code` and reports the end to both peers. */
  private dropPending(p: Pending, code: string, reason: RelayEndReason, message = 'The relay session could not start'): void {
    if (this.pending.get(p.claims.sid) !== p) return;
    p.detach();
    this.pending.delete(p.claims.sid);
    this.release(p.claims.sid, p.claims.side, p.claims.peer, p.ip);
    this.refuse(p.leg, code, code === 'ERR_RELAY_JOIN_TIMEOUT' ? 'The other side did not join in time' : message, p.claims.sid);
    this.ended(p.claims, code, reason);
  }

  private release(sessionId: string, side: 'a' | 'b', peer: string, ip: string): void {
    this.perPeer.remove(peer);
    this.perIp.remove(ip);
    if (!this.admission) return;
    try {
      void Promise.resolve(this.admission.release({ sessionId, side, peerId: peer, ip })).catch(() => undefined);
    } catch {
      // the hook's contract is not to throw; the relay's own state is consistent either way
    }
  }

  /** Records how a session ended, tells both peers, and remembers it for late joiners. */
  private ended(claims: RelayTokenClaims, code: string, reason: RelayEndReason, r?: PumpResult): void {
    const [a, b] = claims.side === 'a' ? [claims.peer, claims.other] : [claims.other, claims.peer];
    const end: RelaySessionEnd = {
      sessionId: claims.sid,
      a,
      b,
      reason,
      code,
      bytesAToB: r?.bytesAToB ?? 0,
      bytesBToA: r?.bytesBToA ?? 0,
      durationMs: r?.durationMs ?? 0,
    };
    this.tombstones.set(claims.sid, code || 'ERR_RELAY_SESSION_ENDED', claims.exp, Date.now());
    this.counts.ended[reason] = (this.counts.ended[reason] ?? 0) + 1;
    this.emit('session-end', end);
    if (!this.notify) return;
    const send = (peer: string, sent: number, received: number): void => {
      try {
        this.notify!(peer, relayMessage('relay-end', { sessionId: claims.sid, reason, code, bytesSent: sent, bytesReceived: received }));
      } catch {
        // the server's problem (peer offline, connection closing): the relay's state is already consistent
      }
    };
    send(a, end.bytesAToB, end.bytesBToA);
    send(b, end.bytesBToA, end.bytesAToB);
  }

  /** Sends an `error` frame and closes the connection once it is flushed (or after `lingerMs`). */
  private refuse(leg: JoinLeg, code: string, message: string, sessionId?: string): void {
    this.counts.rejected[code] = (this.counts.rejected[code] ?? 0) + 1;
    const remote = leg.ip;
    this.emit('rejected', sessionId === undefined ? { code, remote } : { code, remote, sessionId });
    if (!leg.gone) leg.refuse(encodeMessage({ type: 'error', code, message: message.slice(0, 200) }), this.lingerMs);
  }
}

function decodeJoin(join: RelayMsg | RawFrame): string {
  const decoded = decodeRelay(join);
  if (decoded.name !== 'relay-join') throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `Expected relay-join, got ${decoded.name}`);
  return decoded.token;
}
