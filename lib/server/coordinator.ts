/**
 * The coordinator: drives each dial from `connect` to `end`, and enforces the per-peer and server-wide pending
 * limits.
 *
 * Attempt 1 between two peers whose control connections leave from reusable ("warm") ports needs no round trip
 * of its own: the server already knows both mappings (each control connection's source address) and both round
 * trips (measured continuously by the sessions), so the `coord` message itself carries the punch instruction,
 * each side's start delayed by (max − rtt)/2 so that both SYNs leave together. Where a warm port cannot be used —
 * it is busy with another punch (one listener per port), or the pair's warm 4-tuple is still held by an earlier
 * connection — that side observes a fresh port first (prepare → observe → punch), and so do both sides of every
 * later attempt (a failed warm attempt may mean a mapping that no longer holds). `result` messages arrive off the
 * dial's critical path; they decide retries, the relay fallback and `end`.
 *
 * The seam (several server nodes): the coordinator never assumes that a peer is local. It sees peers only as
 * {@link CoordPeer} — id, `send`, `sendCoord` (which wraps the pair key: only the node holding the peer's session
 * knows its session key, so a peer on another node is a proxy whose `sendCoord` ships the clear pair key to that
 * node over an authenticated channel and lets it wrap), `warm` and `rttMs` (state the owning node reports) —
 * and every peer → coordinator message enters through {@link Coordinator.handle}, keyed by coordId, so the owning
 * node forwards a remote peer's messages by calling `handle(proxy, msg)` on the coordinating node; `peerGone(proxy)`
 * when that peer's session ends. `lookup` may answer asynchronously (a cluster directory). Observe connections
 * reach {@link Coordinator.observe} on the node they connect to, which must be the coordinating one (a fallback
 * attempt's `prepare` can name that node's address when the cluster needs it).
 */
import { DIRECT_AUTH_TIMEOUT_MS, MIN_ATTEMPT_MS, RESULT_GRACE_MS } from '../protocol/constants.js';
import { random, safeEqual } from '../protocol/crypto.js';
import { truncateUtf8 } from '../protocol/fields.js';
import type { Endpoint, Family } from '../endpoint.js';
import type { ATTEMPT_OUTCOMES, Message, Msg, PATHS, ROLES } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import type { ResolvedOptions } from './options.js';
import { FIRST_FAMILY_TIMEOUT_MS, firstFamily } from './families.js';
import type { FamilyPeer } from './families.js';
import { planAttempt, punchHopeless } from './plan.js';
import type { AttemptPlan, Observation } from './plan.js';
import { WarmPorts } from './warm.js';

type Role = (typeof ROLES)[number];
type Outcome = (typeof ATTEMPT_OUTCOMES)[number];
type Path = (typeof PATHS)[number];
type PortKind = Msg<'prepare'>['port'];

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

interface Side {
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

interface Coordination {
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
  readonly stats: CoordStats = { started: 0, succeeded: 0, failed: 0, cancelled: 0, attempts: 0, warmAttempts: 0 };
  private readonly coords = new Map<string, Coordination>();
  private readonly byPeer = new Map<CoordPeer, Set<Coordination>>();
  private readonly warm = new WarmPorts<CoordPeer, Coordination>();
  /** Peers whose session ended (an asynchronous lookup may answer after that). */
  private readonly gone = new WeakSet<CoordPeer>();
  private draining = false;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly limits: Limits,
    /** Finds a registered peer; a cluster answers from its directory (possibly asynchronously). */
    private readonly lookup: (id: string) => CoordPeer | undefined | Promise<CoordPeer | undefined>,
    private readonly relayGrants?: RelayGrantIssuer,
    /** A dial ended; `peers` are its two sides (a cluster counts those with a remote side). */
    private readonly onEnd?: (end: CoordinationEnd, peers: readonly CoordPeer[]) => void,
  ) {}

  /** Coordinations in flight. */
  get size(): number {
    return this.coords.size;
  }

  /** The one entry point of peer → coordinator messages. */
  handle(from: CoordPeer, msg: CoordRequest): void {
    switch (msg.type) {
      case 'connect':
        return this.request(from, msg);
      case 'cancel':
        return this.cancel(from, msg);
      case 'result':
        return this.result(from, msg);
      case 'release':
        return this.release(from, msg);
    }
  }

  /** An observe connection presented `msg`; returns false when its coordination, attempt or token is not valid. */
  observe(conn: FramedSocket, msg: Msg<'observe'>, remote: Endpoint): boolean {
    const c = this.coords.get(Buffer.from(msg.coordId).toString('hex'));
    if (!c || c.phase !== 'observe' || msg.attempt !== c.attempt) return false;
    const side = c.sides.find((s) => safeEqual(s.token, msg.token));
    if (!side || side.observed) return false;
    side.observed = { public: remote, private: msg.private, mapping: msg.mapping, filtering: msg.filtering, conn };
    conn.send({ type: 'observed', endpoint: remote });
    if (c.sides.every((s) => s.observed)) this.afterObserve(c);
    return true;
  }

  /** A peer's control session ended: its dials fail for the other side with `ERR_PEER_OFFLINE`. */
  peerGone(peer: CoordPeer): void {
    this.gone.add(peer);
    for (const c of [...this.pendingOf(peer)]) this.end(c, 'failed', 'ERR_PEER_OFFLINE', `Peer ${peer.id} went offline`);
    this.byPeer.delete(peer);
    this.warm.forget(peer); // a new registration punches from another port
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

  private request(from: CoordPeer, msg: Msg<'connect'>): void {
    const reject = (code: string, message: string): void => void from.send({ type: 'reject', reqId: msg.reqId, code, message });
    if (this.draining) return reject('ERR_SERVER_CLOSING', 'The server is shutting down');
    if (msg.path !== 'direct' && !this.relayGrants) return reject('ERR_PATH_UNSUPPORTED', 'This server runs no relay');
    if (msg.target === from.id) return reject('ERR_INVALID_TARGET', 'A peer cannot dial itself');
    const found = this.lookup(msg.target);
    if (!(found instanceof Promise)) return this.admit(from, msg, found);
    found.then(
      (target) => {
        if (this.gone.has(from)) return; // the dialer left while the directory answered
        if (this.draining) return reject('ERR_SERVER_CLOSING', 'The server is shutting down');
        this.admit(from, msg, target);
      },
      (err: unknown) => reject('ERR_INTERNAL', `Peer lookup failed: ${String(err)}`),
    );
  }

  /** Starts the coordination of `msg` once its target is known. */
  private admit(from: CoordPeer, msg: Msg<'connect'>, target: CoordPeer | undefined): void {
    const reject = (code: string, message: string): void => void from.send({ type: 'reject', reqId: msg.reqId, code, message });
    if (!target) return reject('ERR_PEER_OFFLINE', `Peer ${msg.target} is not online`);
    if (this.pendingOf(from).size >= this.limits.maxPendingPerPeer)
      return reject('ERR_TOO_MANY_PENDING', `At most ${this.limits.maxPendingPerPeer} dials may be pending per peer`);
    if (this.pendingOf(target).size >= this.limits.maxPendingPerPeer)
      return reject('ERR_PEER_BUSY', `Peer ${msg.target} has too many pending dials`);
    if (this.coords.size >= this.limits.maxCoordinations) return reject('ERR_SERVER_BUSY', 'Too many dials in flight');

    const timeoutMs = msg.timeoutMs === 0 ? this.limits.defaultDialTimeoutMs : Math.min(msg.timeoutMs, this.limits.maxDialTimeoutMs);
    const id = random(16);
    const side = (peer: CoordPeer, role: Role): Side => ({
      peer, role, token: random(16), port: 'fresh', observed: undefined, outcome: undefined, committed: false, detail: '',
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
      timer: undefined,
      firstFamily: firstFamily(from, target),
    };
    this.coords.set(c.key, c);
    for (const s of c.sides) this.pendingOf(s.peer).add(c);
    this.stats.started++;
    const pairKey = random(32);
    const announce = (fold?: { plan: AttemptPlan; delays: [number, number]; timeoutMs: number }): void => {
      for (const [i, s] of c.sides.entries()) {
        s.peer.sendCoord(
          {
            type: 'coord',
            reqId: s.role === 'initiator' ? msg.reqId : 0,
            coordId: id,
            peer: c.sides[1 - i]!.peer.id,
            role: s.role,
            path: msg.path,
            timeoutMs,
            link: msg.link,
            attempt: fold ? c.attempt : 0,
            nonce: c.nonce,
            mode: fold?.plan.mode ?? 'sync',
            route: fold?.plan.route ?? 'public',
            remote: fold ? [fold.plan.remotes[i]!] : [],
            delayMs: fold?.delays[i] ?? 0,
            punchTimeoutMs: fold?.timeoutMs ?? 0,
          },
          pairKey,
        );
      }
    };
    if (c.path !== 'direct') {
      announce();
      return this.startRelay(c);
    }
    const ports: [PortKind, PortKind] = c.firstFamily ? ['fresh', 'fresh'] : this.warmPorts(c);
    if (ports[0] === 'warm' && ports[1] === 'warm') return this.foldedAttempt(c, announce);
    announce();
    this.startAttempt(c, ports);
  }

  /** Attempt 1 with both sides warm: planned from what the sessions know, sent inside `coord`. */
  private foldedAttempt(c: Coordination, announce: (fold?: { plan: AttemptPlan; delays: [number, number]; timeoutMs: number }) => void): void {
    c.attempt = 1;
    this.stats.attempts++;
    for (const s of c.sides) {
      s.port = 'warm';
      s.observed = { ...s.peer.warm! };
    }
    const verdict = this.planOf(c);
    if (typeof verdict === 'string') {
      announce();
      return this.end(c, 'failed', verdict === 'family' ? 'ERR_NO_COMMON_FAMILY' : 'ERR_PUNCH_UNLIKELY', this.planError(c, verdict));
    }
    const delays = this.delaysOf(c, verdict);
    const timeoutMs = this.punchTimeout(c, delays);
    if (timeoutMs < 1) {
      announce();
      return this.end(c, 'failed', 'ETIMEDOUT', 'The dial deadline passed');
    }
    this.occupyWarm(c);
    this.stats.warmAttempts++;
    c.phase = 'punch';
    announce({ plan: verdict, delays, timeoutMs });
    this.armPunch(c, delays, timeoutMs);
  }

  /** Which port each side of attempt 1 punches from. */
  private warmPorts(c: Coordination): [PortKind, PortKind] {
    const [a, b] = c.sides.map((s) => (s.peer.warm && !this.warm.isBusy(s.peer) ? 'warm' : 'fresh')) as [PortKind, PortKind];
    // The pair's warm-to-warm 4-tuple is still taken: a fresh port on the dialing side makes new ones.
    if (a === 'warm' && b === 'warm' && this.warm.linked(c.sides[0].peer, c.sides[1].peer)) return ['fresh', 'warm'];
    return [a, b];
  }

  private cancel(from: CoordPeer, msg: Msg<'cancel'>): void {
    const c = this.coords.get(Buffer.from(msg.coordId).toString('hex'));
    if (!c || !this.sideOf(c, from)) return;
    this.end(c, 'cancelled', msg.code, msg.message);
  }

  /** Handles `result`: a side's outcome of the current attempt. */
  private result(from: CoordPeer, msg: Msg<'result'>): void {
    const c = this.find(msg.coordId, msg.attempt);
    const side = c && this.sideOf(c, from);
    if (!c || !side || side.outcome !== undefined) return;
    side.outcome = msg.outcome;
    side.detail = msg.detail;
    side.committed = msg.outcome === 'ok' && msg.committed;
    this.freeWarm(c, side);
    if (c.phase !== 'punch') return this.attemptFailed(c); // a side gave up before punching (bind or observe failed)
    // A relayed dial pairs both joins or nothing: once one side could not join, the other side's join can never be
    // paired, so end the dial now rather than leave that side waiting for its join deadline. Likewise a side whose
    // punch failed has closed its port: the other side's punch can no longer succeed, so start the next attempt
    // now instead of waiting out the other side's attemptTimeoutMs.
    if (msg.outcome !== 'ok') return this.attemptFailed(c);
    if (c.sides.every((s) => s.outcome !== undefined)) this.conclude(c);
  }

  /** A side closed a socket punched from its warm port. */
  private release(from: CoordPeer, msg: Msg<'release'>): void {
    this.warm.release(Buffer.from(msg.coordId).toString('hex'), from);
  }

  private pendingOf(peer: CoordPeer): Set<Coordination> {
    let set = this.byPeer.get(peer);
    if (!set) this.byPeer.set(peer, (set = new Set()));
    return set;
  }

  private find(coordId: Uint8Array, attempt: number): Coordination | undefined {
    const c = this.coords.get(Buffer.from(coordId).toString('hex'));
    return c && c.attempt === attempt ? c : undefined;
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

  /** Starts an attempt in which `ports` says which side observes a fresh port first. */
  private startAttempt(c: Coordination, ports: [PortKind, PortKind] = ['fresh', 'fresh']): void {
    this.freeWarm(c);
    c.attempt++;
    c.phase = 'observe';
    c.nonce = random(16);
    this.stats.attempts++;
    const family = c.attempt === 1 ? c.firstFamily : undefined;
    c.sides.forEach((s, i) => {
      s.token = random(16);
      s.port = ports[i]!;
      s.observed = s.port === 'warm' ? { ...s.peer.warm! } : undefined;
      s.outcome = undefined;
      s.committed = false;
      s.detail = '';
      const start = { coordId: c.id, attempt: c.attempt, token: s.token, nonce: c.nonce };
      // Dual-stack: a side whose control connection is in another family observes a fresh port in `family`.
      if (family && s.peer.controlFamily !== family) s.peer.send({ type: 'prepare-family', ...start, family });
      else s.peer.send({ type: 'prepare', ...start, port: s.port });
    });
    this.occupyWarm(c);
    if (c.sides.every((s) => s.observed)) return this.afterObserve(c);
    this.arm(c, Math.min(this.remaining(c), this.limits.handshakeTimeoutMs), () => this.phaseTimeout(c, 'observe'));
  }

  /**
   * A relayed dial is one attempt: both sides get a grant for the same relay session (named after the
   * coordination), sent right behind `coord`, join the relay and report their `result` like a punch.
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

  /** The plan of the current attempt from both observations, or why there is none. */
  private planOf(c: Coordination): AttemptPlan | 'family' | 'hopeless' {
    const [a, b] = [c.sides[0].observed!, c.sides[1].observed!];
    // Dual-stack: an untranslated IPv6 address looks reachable but usually sits behind a stateful firewall (RFC 6092)
    // that drops a SYN arriving before its own host's: the first-family attempt synchronises instead of reversing.
    const reversal = this.limits.reversal && !(c.firstFamily && c.attempt === 1);
    const plan = planAttempt(a, b, c.attempt, this.limits.maxAttempts, reversal);
    if (!plan) return 'family';
    return punchHopeless(a, b) ? 'hopeless' : plan;
  }

  private planError(c: Coordination, verdict: 'family' | 'hopeless'): string {
    if (verdict === 'family') return 'The peers reach the server over different IP versions';
    return `Punching cannot work: ${punchHopeless(c.sides[0].observed!, c.sides[1].observed!)}`;
  }

  /** Start delays that make both SYNs leave together: each side waits (max − its rtt) / 2 after the message arrives. */
  private delaysOf(c: Coordination, plan: AttemptPlan): [number, number] {
    if (plan.mode === 'reverse') return [0, 0];
    const rtts = c.sides.map((s) => s.peer.rttMs);
    const max = Math.max(...rtts);
    return rtts.map((r) => Math.round((max - r) / 2)) as [number, number];
  }

  private punchTimeout(c: Coordination, delays: [number, number]): number {
    // Dual-stack: the first-family attempt is kept short, the control family follows it.
    const cap = c.firstFamily && c.attempt === 1 ? Math.min(FIRST_FAMILY_TIMEOUT_MS, this.limits.attemptTimeoutMs) : this.limits.attemptTimeoutMs;
    return Math.floor(Math.min(cap, this.remaining(c) - Math.max(...delays)));
  }

  private afterObserve(c: Coordination): void {
    const verdict = this.planOf(c);
    if (verdict === 'family') return this.end(c, 'failed', 'ERR_NO_COMMON_FAMILY', this.planError(c, verdict));
    if (verdict === 'hopeless') return this.end(c, 'failed', 'ERR_PUNCH_UNLIKELY', this.planError(c, verdict));
    const delays = this.delaysOf(c, verdict);
    const timeoutMs = this.punchTimeout(c, delays);
    if (timeoutMs < 1) return this.end(c, 'failed', 'ETIMEDOUT', 'The dial deadline passed');
    c.phase = 'punch';
    if (c.sides.every((s) => s.port === 'warm')) this.stats.warmAttempts++;
    c.sides.forEach((s, i) => {
      s.peer.send({
        type: 'punch', coordId: c.id, attempt: c.attempt, mode: verdict.mode, route: verdict.route,
        remote: verdict.remotes[i]!, delayMs: delays[i]!, timeoutMs,
      });
    });
    this.armPunch(c, delays, timeoutMs);
  }

  private armPunch(c: Coordination, delays: [number, number], timeoutMs: number): void {
    if (c.sides.every((s) => s.port === 'warm')) this.warm.link(c.key, c.sides[0].peer, c.sides[1].peer);
    const maxDelay = Math.max(...delays);
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
    if (ok === 1 && (c.attempt >= this.limits.maxAttempts || this.remaining(c) < MIN_ATTEMPT_MS)) return this.oneSided(c);
    this.attemptFailed(c);
  }

  private oneSided(c: Coordination): void {
    const bad = c.sides.find((s) => s.outcome !== 'ok')!;
    this.end(c, 'failed', 'ERR_HANDSHAKE_FAILED', `${bad.peer.id}: ${bad.outcome} ${bad.detail}`.trim());
  }

  private attemptFailed(c: Coordination): void {
    this.closeObserves(c);
    // A side that already handed its socket over cannot take part in another attempt.
    if (c.sides.some((s) => s.committed)) return this.oneSided(c);
    if (c.path !== 'direct') {
      const why = c.sides.map((s) => `${s.peer.id}: ${s.outcome ?? 'aborted'}${s.detail ? ` (${s.detail})` : ''}`).join('; ');
      return this.end(c, 'failed', 'ERR_RELAY_FAILED', `The relay could not connect the peers: ${why}`);
    }
    this.settleLink(c, false);
    if (c.attempt < this.limits.maxAttempts && this.remaining(c) >= MIN_ATTEMPT_MS) return this.startAttempt(c);
    const why = c.sides.map((s) => `${s.peer.id}: ${s.outcome ?? 'aborted'}${s.detail ? ` (${s.detail})` : ''}`).join('; ');
    if (c.attempt < this.limits.maxAttempts) return this.end(c, 'failed', 'ETIMEDOUT', `The dial deadline passed: ${why}`);
    this.end(c, 'failed', 'ERR_PUNCH_FAILED', `All ${c.attempt} attempts failed: ${why}`);
  }

  private closeObserves(c: Coordination): void {
    for (const s of c.sides) s.observed?.conn?.end();
  }

  private occupyWarm(c: Coordination): void {
    for (const s of c.sides) if (s.port === 'warm') this.warm.occupy(s.peer, c);
  }

  /** Frees the warm ports `c` occupies (one side's, or all). */
  private freeWarm(c: Coordination, only?: Side): void {
    for (const s of only ? [only] : c.sides) this.warm.free(s.peer, c);
  }

  /** The attempt is over: sides that hold no socket of it no longer hold its 4-tuples. */
  private settleLink(c: Coordination, ok: boolean): void {
    for (const s of c.sides) if (!(ok || s.committed)) this.warm.release(c.key, s.peer);
  }

  private end(c: Coordination, outcome: 'ok' | 'failed' | 'cancelled', code: string, message: string): void {
    if (c.phase === 'ended') return;
    c.phase = 'ended';
    clearTimeout(c.timer);
    this.closeObserves(c);
    this.freeWarm(c);
    this.settleLink(c, outcome === 'ok');
    this.coords.delete(c.key);
    for (const s of c.sides) {
      this.byPeer.get(s.peer)?.delete(c);
      // A side that has committed is done with this dial and would drop the `end`: one write fewer each.
      if (!s.committed) s.peer.send({ type: 'end', coordId: c.id, outcome, code, message: truncateUtf8(message, 256) });
    }
    if (outcome === 'ok') this.stats.succeeded++;
    else if (outcome === 'cancelled') this.stats.cancelled++;
    else this.stats.failed++;
    this.onEnd?.({ path: c.path, outcome, code, durationMs: performance.now() - c.startedAt }, c.sides.map((s) => s.peer));
    if (this.draining && this.coords.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }
}
