/**
 * The coordinator: drives each dial from `connect` to `end` through up to N attempts of
 * prepare → observe → (sync) → punch → result, and enforces the per-peer and server-wide pending limits.
 *
 * It only talks to peers through {@link CoordPeer} (a registered control session) and to observe connections
 * through their FramedSocket; it knows nothing about sockets, auth or the registry.
 */
import { DIRECT_AUTH_TIMEOUT_MS, MIN_ATTEMPT_MS, RESULT_GRACE_MS } from '../protocol/constants.js';
import { random, safeEqual, wrapPairKey } from '../protocol/crypto.js';
import { truncateUtf8 } from '../protocol/fields.js';
import type { Endpoint } from '../protocol/fields.js';
import type { ATTEMPT_OUTCOMES, Message, Msg, PATHS, ROLES } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import type { ResolvedOptions } from './options.js';
import { planAttempt, punchHopeless } from './plan.js';
import type { AttemptPlan, Observation } from './plan.js';

type Role = (typeof ROLES)[number];
type Outcome = (typeof ATTEMPT_OUTCOMES)[number];
type Path = (typeof PATHS)[number];

/**
 * Issues the relay grants of a relayed dial: the `relay-token` messages for the initiator (`a`) and the responder
 * (`b`) of session `sessionId`, valid for `ttlMs`. Absent when the server runs no relay.
 */
export type RelayGrantIssuer = (pair: { a: string; b: string; sessionId: string; ttlMs: number }) => { a: Message; b: Message };

/** A registered peer as the coordinator sees it. */
export interface CoordPeer {
  readonly id: string;
  /** Key derived during auth; wraps pair keys sent to this peer. */
  readonly sessionKey: Uint8Array;
  send(msg: Message): boolean;
}

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
}

interface Side {
  readonly peer: CoordPeer;
  readonly role: Role;
  token: Buffer;
  observed: (Observation & { conn: FramedSocket }) | undefined;
  seq: number;
  sentAt: number;
  rtt: number | undefined;
  outcome: Outcome | undefined;
  detail: string;
}

interface Coordination {
  readonly key: string;
  readonly id: Buffer;
  readonly sides: readonly [Side, Side];
  readonly path: Path;
  readonly deadline: number;
  readonly startedAt: number;
  attempt: number;
  phase: 'observe' | 'sync' | 'punch' | 'ended';
  nonce: Buffer;
  plan: AttemptPlan | undefined;
  timer: NodeJS.Timeout | undefined;
}

type Limits = Pick<
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

/** Coordinates dials between registered peers. */
export class Coordinator {
  readonly stats: CoordStats = { started: 0, succeeded: 0, failed: 0, cancelled: 0, attempts: 0 };
  private readonly coords = new Map<string, Coordination>();
  private readonly byPeer = new Map<CoordPeer, Set<Coordination>>();
  private draining = false;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly limits: Limits,
    private readonly lookup: (id: string) => CoordPeer | undefined,
    private readonly relayGrants?: RelayGrantIssuer,
    private readonly onEnd?: (end: CoordinationEnd) => void,
  ) {}

  /** Coordinations in flight. */
  get size(): number {
    return this.coords.size;
  }

  /** Handles a `connect` request from a registered peer. */
  request(from: CoordPeer, msg: Msg<'connect'>): void {
    const reject = (code: string, message: string): void => void from.send({ type: 'reject', reqId: msg.reqId, code, message });
    if (this.draining) return reject('ERR_SERVER_CLOSING', 'The server is shutting down');
    if (msg.path !== 'direct' && !this.relayGrants) return reject('ERR_PATH_UNSUPPORTED', 'This server runs no relay');
    if (msg.target === from.id) return reject('ERR_INVALID_TARGET', 'A peer cannot dial itself');
    const target = this.lookup(msg.target);
    if (!target) return reject('ERR_PEER_OFFLINE', `Peer ${msg.target} is not online`);
    if (this.pendingOf(from).size >= this.limits.maxPendingPerPeer)
      return reject('ERR_TOO_MANY_PENDING', `At most ${this.limits.maxPendingPerPeer} dials may be pending per peer`);
    if (this.pendingOf(target).size >= this.limits.maxPendingPerPeer)
      return reject('ERR_PEER_BUSY', `Peer ${msg.target} has too many pending dials`);
    if (this.coords.size >= this.limits.maxCoordinations) return reject('ERR_SERVER_BUSY', 'Too many dials in flight');

    const timeoutMs = msg.timeoutMs === 0 ? this.limits.defaultDialTimeoutMs : Math.min(msg.timeoutMs, this.limits.maxDialTimeoutMs);
    const id = random(16);
    const side = (peer: CoordPeer, role: Role): Side => ({
      peer, role, token: random(16), observed: undefined, seq: 0, sentAt: 0, rtt: undefined, outcome: undefined, detail: '',
    });
    const c: Coordination = {
      key: id.toString('hex'),
      id,
      sides: [side(from, 'initiator'), side(target, 'responder')],
      path: msg.path,
      deadline: performance.now() + timeoutMs,
      startedAt: performance.now(),
      attempt: 0,
      phase: 'observe',
      nonce: random(16),
      plan: undefined,
      timer: undefined,
    };
    this.coords.set(c.key, c);
    for (const s of c.sides) this.pendingOf(s.peer).add(c);
    this.stats.started++;
    const pairKey = random(32);
    for (const s of c.sides) {
      s.peer.send({
        type: 'coord',
        reqId: s.role === 'initiator' ? msg.reqId : 0,
        coordId: id,
        peer: (s.role === 'initiator' ? target : from).id,
        role: s.role,
        path: msg.path,
        pairKey: wrapPairKey(s.peer.sessionKey, id, pairKey),
        timeoutMs,
        link: msg.link,
      });
    }
    if (c.path === 'direct') this.startAttempt(c);
    else this.startRelay(c);
  }

  /** An observe connection presented `msg`; returns false when its coordination, attempt or token is not valid. */
  observe(conn: FramedSocket, msg: Msg<'observe'>, remote: Endpoint): boolean {
    const c = this.coords.get(Buffer.from(msg.coordId).toString('hex'));
    if (!c || c.phase !== 'observe' || msg.attempt !== c.attempt) return false;
    const side = c.sides.find((s) => safeEqual(s.token, msg.token));
    if (!side || side.observed) return false;
    side.observed = { public: remote, private: msg.private, mapping: msg.mapping, conn };
    conn.send({ type: 'observed', endpoint: remote });
    if (c.sides.every((s) => s.observed)) this.afterObserve(c);
    return true;
  }

  /** Handles `sync-ack`. */
  syncAck(from: CoordPeer, msg: Msg<'sync-ack'>): void {
    const c = this.find(msg.coordId, msg.attempt, 'sync');
    const side = c && this.sideOf(c, from);
    if (!c || !side || side.rtt !== undefined || side.seq !== msg.seq) return;
    side.rtt = performance.now() - side.sentAt;
    if (c.sides.every((s) => s.rtt !== undefined)) {
      const max = Math.max(...c.sides.map((s) => s.rtt!));
      this.sendPunch(c, c.plan!, c.sides.map((s) => Math.round((max - s.rtt!) / 2)) as [number, number]);
    }
  }

  /** Handles `result`: a side's outcome of the current attempt. */
  result(from: CoordPeer, msg: Msg<'result'>): void {
    const c = this.find(msg.coordId, msg.attempt);
    const side = c && this.sideOf(c, from);
    if (!c || !side || side.outcome !== undefined) return;
    side.outcome = msg.outcome;
    side.detail = msg.detail;
    if (c.phase !== 'punch') return this.attemptFailed(c); // a side gave up before punching (bind or observe failed)
    // A relayed dial pairs both joins or nothing: once one side could not join, the other side's join can never be
    // paired, so end the dial now rather than leave that side waiting for its join deadline. Likewise a side whose
    // punch failed has closed its port: the other side's punch can no longer succeed, so start the next attempt
    // now instead of waiting out the other side's attemptTimeoutMs.
    if (msg.outcome !== 'ok') return this.attemptFailed(c);
    if (c.sides.every((s) => s.outcome !== undefined)) this.conclude(c);
  }

  /** Handles `cancel` from either side: the dial ends for both with the sender's code. */
  cancel(from: CoordPeer, msg: Msg<'cancel'>): void {
    const c = this.coords.get(Buffer.from(msg.coordId).toString('hex'));
    if (!c || !this.sideOf(c, from)) return;
    this.end(c, 'cancelled', msg.code, msg.message);
  }

  /** A peer's control session ended: its dials fail for the other side with `ERR_PEER_OFFLINE`. */
  peerGone(peer: CoordPeer): void {
    for (const c of [...this.pendingOf(peer)]) this.end(c, 'failed', 'ERR_PEER_OFFLINE', `Peer ${peer.id} went offline`);
    this.byPeer.delete(peer);
  }

  /** Refuses new dials from now on; resolves once none is in flight. */
  drain(): Promise<void> {
    this.draining = true;
    if (this.coords.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Ends every dial in flight with `code`. */
  endAll(code: string, message: string): void {
    for (const c of [...this.coords.values()]) this.end(c, 'failed', code, message);
  }

  private pendingOf(peer: CoordPeer): Set<Coordination> {
    let set = this.byPeer.get(peer);
    if (!set) this.byPeer.set(peer, (set = new Set()));
    return set;
  }

  private find(coordId: Uint8Array, attempt: number, phase?: Coordination['phase']): Coordination | undefined {
    const c = this.coords.get(Buffer.from(coordId).toString('hex'));
    if (!c || c.attempt !== attempt || (phase && c.phase !== phase)) return undefined;
    return c;
  }

  private sideOf(c: Coordination, peer: CoordPeer): Side | undefined {
    return c.sides.find((s) => s.peer === peer);
  }

  private remaining(c: Coordination): number {
    return c.deadline - performance.now();
  }

  private arm(c: Coordination, ms: number, onExpiry: () => void): void {
    clearTimeout(c.timer);
    c.timer = setTimeout(onExpiry, Math.max(0, ms));
  }

  private startAttempt(c: Coordination): void {
    c.attempt++;
    c.phase = 'observe';
    c.nonce = random(16);
    this.stats.attempts++;
    for (const s of c.sides) {
      s.token = random(16);
      s.observed = undefined;
      s.rtt = undefined;
      s.outcome = undefined;
      s.detail = '';
      s.peer.send({ type: 'prepare', coordId: c.id, attempt: c.attempt, token: s.token, nonce: c.nonce });
    }
    this.arm(c, Math.min(this.remaining(c), this.limits.handshakeTimeoutMs), () => this.phaseTimeout(c, 'observe'));
  }

  /**
   * A relayed dial is one attempt: both sides get a grant for the same relay session (named after the
   * coordination), join the relay and report their `result` like a punch.
   */
  private startRelay(c: Coordination): void {
    c.attempt = 1;
    c.phase = 'punch';
    this.stats.attempts++;
    const [a, b] = c.sides;
    const ttlMs = Math.max(1, Math.ceil(this.remaining(c)));
    const grants = this.relayGrants!({ a: a.peer.id, b: b.peer.id, sessionId: c.key, ttlMs });
    a.peer.send(grants.a);
    b.peer.send(grants.b);
    this.arm(c, this.remaining(c) + RESULT_GRACE_MS, () => this.phaseTimeout(c, 'punch'));
  }

  private afterObserve(c: Coordination): void {
    const plan = planAttempt(c.sides[0].observed!, c.sides[1].observed!, c.attempt, this.limits.maxAttempts, this.limits.reversal);
    if (!plan) return this.end(c, 'failed', 'ERR_NO_COMMON_FAMILY', 'The peers reach the server over different IP versions');
    const hopeless = punchHopeless(c.sides[0].observed!, c.sides[1].observed!);
    if (hopeless) return this.end(c, 'failed', 'ERR_PUNCH_UNLIKELY', `Punching cannot work: ${hopeless}`);
    if (plan.mode === 'reverse') return this.sendPunch(c, plan, [0, 0]);
    c.phase = 'sync';
    c.plan = plan;
    const now = performance.now();
    for (const s of c.sides) {
      s.seq = random(4).readUInt32BE(0);
      s.sentAt = now;
      s.peer.send({ type: 'sync', coordId: c.id, attempt: c.attempt, seq: s.seq });
    }
    this.arm(c, Math.min(this.remaining(c), this.limits.handshakeTimeoutMs), () => this.phaseTimeout(c, 'sync'));
  }

  private sendPunch(c: Coordination, plan: AttemptPlan, delays: [number, number]): void {
    const maxDelay = Math.max(...delays);
    const timeoutMs = Math.floor(Math.min(this.limits.attemptTimeoutMs, this.remaining(c) - maxDelay));
    if (timeoutMs < 1) return this.end(c, 'failed', 'ETIMEDOUT', 'The dial deadline passed');
    c.phase = 'punch';
    c.sides.forEach((s, i) => {
      s.peer.send({
        type: 'punch', coordId: c.id, attempt: c.attempt, mode: plan.mode, route: plan.route,
        remote: plan.remotes[i]!, delayMs: delays[i]!, timeoutMs,
      });
    });
    this.arm(c, maxDelay + timeoutMs + DIRECT_AUTH_TIMEOUT_MS + RESULT_GRACE_MS, () => this.phaseTimeout(c, 'punch'));
  }

  private phaseTimeout(c: Coordination, phase: Coordination['phase']): void {
    if (c.phase !== phase) return;
    for (const s of c.sides) {
      if (s.outcome === undefined) {
        s.outcome = 'timeout';
        s.detail = `no ${phase === 'punch' ? 'result' : phase} from ${s.peer.id} in time`;
      }
    }
    if (phase === 'punch') this.conclude(c);
    else this.attemptFailed(c);
  }

  private conclude(c: Coordination): void {
    const ok = c.sides.filter((s) => s.outcome === 'ok').length;
    if (ok === 2) return this.end(c, 'ok', 'OK', 'Connected');
    // One side authenticated, the other did not: the connection works in one direction only (a NAT dropped one
    // side's packets). Like a failed attempt: the next one uses fresh ports; the last one ends the dial.
    if (ok === 1 && (c.attempt >= this.limits.maxAttempts || this.remaining(c) < MIN_ATTEMPT_MS)) {
      const bad = c.sides.find((s) => s.outcome !== 'ok')!;
      return this.end(c, 'failed', 'ERR_HANDSHAKE_FAILED', `${bad.peer.id}: ${bad.outcome} ${bad.detail}`.trim());
    }
    this.attemptFailed(c);
  }

  private attemptFailed(c: Coordination): void {
    this.closeObserves(c);
    if (c.path !== 'direct') {
      const why = c.sides.map((s) => `${s.peer.id}: ${s.outcome ?? 'aborted'}${s.detail ? ` (${s.detail})` : ''}`).join('; ');
      return this.end(c, 'failed', 'ERR_RELAY_FAILED', `The relay could not connect the peers: ${why}`);
    }
    if (c.attempt < this.limits.maxAttempts && this.remaining(c) >= MIN_ATTEMPT_MS) return this.startAttempt(c);
    const why = c.sides.map((s) => `${s.peer.id}: ${s.outcome ?? 'aborted'}${s.detail ? ` (${s.detail})` : ''}`).join('; ');
    if (c.attempt < this.limits.maxAttempts) return this.end(c, 'failed', 'ETIMEDOUT', `The dial deadline passed: ${why}`);
    this.end(c, 'failed', 'ERR_PUNCH_FAILED', `All ${c.attempt} attempts failed: ${why}`);
  }

  private closeObserves(c: Coordination): void {
    for (const s of c.sides) s.observed?.conn.end();
  }

  private end(c: Coordination, outcome: 'ok' | 'failed' | 'cancelled', code: string, message: string): void {
    if (c.phase === 'ended') return;
    c.phase = 'ended';
    clearTimeout(c.timer);
    this.closeObserves(c);
    this.coords.delete(c.key);
    for (const s of c.sides) {
      this.byPeer.get(s.peer)?.delete(c);
      s.peer.send({ type: 'end', coordId: c.id, outcome, code, message: truncateUtf8(message, 256) });
    }
    if (outcome === 'ok') this.stats.succeeded++;
    else if (outcome === 'cancelled') this.stats.cancelled++;
    else this.stats.failed++;
    this.onEnd?.({ path: c.path, outcome, code, durationMs: performance.now() - c.startedAt });
    if (this.draining && this.coords.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }
}
