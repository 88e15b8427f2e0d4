/**
 * The coordinator: drives each dial from `connect` to `end`, and enforces the per-peer and server-wide pending
 * limits. Its parts: admission.ts opens a dial, punch-timing.ts plans and times an attempt, relay-grant.ts grants a
 * relayed dial, outcome.ts decides what the sides' results mean; warm.ts keeps the warm ports' bookkeeping.
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
import { RESULT_GRACE_MS } from '../protocol/constants.js';
import { random, safeEqual } from '../protocol/crypto.js';
import { truncateUtf8 } from '../protocol/fields.js';
import type { Endpoint } from '../endpoint.js';
import type { Msg } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import { coordDraft, coordKey, dialTimeout, newCoordination, refusal } from './admission.js';
import type {
  Coordination, CoordinationEnd, CoordLimits, CoordPeer, CoordRequest, CoordStats, EndVerdict, PortKind, RelayGrantIssuer, Side,
} from './coord-types.js';
import { afterFailure, concluded, timeOutSilent } from './outcome.js';
import { remaining, resultWaitMs, timedPlan } from './punch-timing.js';
import type { TimedPlan } from './punch-timing.js';
import { sendRelayGrants } from './relay-grant.js';
import { WarmPorts } from './warm.js';

export type { CoordDraft, CoordinationEnd, CoordPeer, CoordRequest, CoordStats, RelayGrantIssuer } from './coord-types.js';

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
    private readonly limits: CoordLimits,
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
    const c = this.coords.get(coordKey(msg.coordId));
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
    for (const c of [...this.pendingOf(peer)]) this.fail(c, 'ERR_PEER_OFFLINE', `Peer ${peer.id} went offline`);
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
    for (const c of [...this.coords.values()]) this.fail(c, code, message);
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
    const refused = refusal(from, target, msg, this.limits, (p) => this.pendingOf(p).size, this.coords.size);
    if (refused) return void from.send({ type: 'reject', reqId: msg.reqId, ...refused });
    const timeoutMs = dialTimeout(msg, this.limits);
    const c = newCoordination(from, target!, msg, timeoutMs);
    this.coords.set(c.key, c);
    for (const s of c.sides) this.pendingOf(s.peer).add(c);
    this.stats.started++;
    const pairKey = random(32);
    const announce = (fold?: TimedPlan): void => {
      for (const i of [0, 1] as const) c.sides[i].peer.sendCoord(coordDraft(c, i, msg, timeoutMs, fold), pairKey);
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
  private foldedAttempt(c: Coordination, announce: (fold?: TimedPlan) => void): void {
    c.attempt = 1;
    this.stats.attempts++;
    for (const s of c.sides) {
      s.port = 'warm';
      s.observed = { ...s.peer.warm! };
    }
    const timed = timedPlan(c, this.limits);
    if ('outcome' in timed) {
      announce();
      return this.end(c, timed);
    }
    this.occupyWarm(c);
    this.stats.warmAttempts++;
    c.phase = 'punch';
    announce(timed);
    this.armPunch(c, timed);
  }

  /** Which port each side of attempt 1 punches from. */
  private warmPorts(c: Coordination): [PortKind, PortKind] {
    const [a, b] = c.sides.map((s) => (s.peer.warm && !this.warm.isBusy(s.peer) ? 'warm' : 'fresh')) as [PortKind, PortKind];
    // The pair's warm-to-warm 4-tuple is still taken: a fresh port on the dialing side makes new ones.
    if (a === 'warm' && b === 'warm' && this.warm.linked(c.sides[0].peer, c.sides[1].peer)) return ['fresh', 'warm'];
    return [a, b];
  }

  private cancel(from: CoordPeer, msg: Msg<'cancel'>): void {
    const c = this.coords.get(coordKey(msg.coordId));
    if (!c || !this.sideOf(c, from)) return;
    this.end(c, { outcome: 'cancelled', code: msg.code, message: msg.message });
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
    this.warm.release(coordKey(msg.coordId), from);
  }

  private pendingOf(peer: CoordPeer): Set<Coordination> {
    let set = this.byPeer.get(peer);
    if (!set) this.byPeer.set(peer, (set = new Set()));
    return set;
  }

  private find(coordId: Uint8Array, attempt: number): Coordination | undefined {
    const c = this.coords.get(coordKey(coordId));
    return c && c.attempt === attempt ? c : undefined;
  }

  private sideOf(c: Coordination, peer: CoordPeer): Side | undefined {
    return c.sides.find((s) => s.peer === peer);
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
    this.arm(c, Math.min(remaining(c), this.limits.handshakeTimeoutMs), () => this.phaseTimeout(c, 'observe'));
  }

  /** The one attempt of a relayed dial: grants for both sides, then their results as for a punch. */
  private startRelay(c: Coordination): void {
    c.attempt = 1;
    c.phase = 'punch';
    this.stats.attempts++;
    sendRelayGrants(c, this.relayGrants!);
    this.arm(c, remaining(c) + RESULT_GRACE_MS, () => this.phaseTimeout(c, 'punch'));
  }

  private afterObserve(c: Coordination): void {
    const timed = timedPlan(c, this.limits);
    if ('outcome' in timed) return this.end(c, timed);
    c.phase = 'punch';
    if (c.sides.every((s) => s.port === 'warm')) this.stats.warmAttempts++;
    const { plan, delays, timeoutMs } = timed;
    c.sides.forEach((s, i) => {
      s.peer.send({
        type: 'punch', coordId: c.id, attempt: c.attempt, mode: plan.mode, route: plan.route,
        remote: plan.remotes[i]!, delayMs: delays[i]!, timeoutMs,
      });
    });
    this.armPunch(c, timed);
  }

  private armPunch(c: Coordination, timed: TimedPlan): void {
    if (c.sides.every((s) => s.port === 'warm')) this.warm.link(c.key, c.sides[0].peer, c.sides[1].peer);
    this.arm(c, resultWaitMs(timed), () => this.phaseTimeout(c, 'punch'));
  }

  private phaseTimeout(c: Coordination, phase: 'observe' | 'punch'): void {
    if (c.phase !== phase) return;
    timeOutSilent(c, phase);
    if (phase === 'punch') this.conclude(c);
    else this.attemptFailed(c);
  }

  private conclude(c: Coordination): void {
    const verdict = concluded(c, this.limits);
    if (verdict === 'failed-attempt') return this.attemptFailed(c);
    this.end(c, verdict);
  }

  private attemptFailed(c: Coordination): void {
    this.closeObserves(c);
    const next = afterFailure(c, this.limits);
    if (next !== 'retry') return this.end(c, next);
    this.settleLink(c, false);
    this.startAttempt(c);
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

  private fail(c: Coordination, code: string, message: string): void {
    this.end(c, { outcome: 'failed', code, message });
  }

  private end(c: Coordination, { outcome, code, message }: EndVerdict): void {
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
