/**
 * One coordinated dial as a peer lives it, on either side: follows the server's coord (which may carry attempt 1)
 * / prepare / punch / end messages, runs one {@link AttemptRunner} at a time, reports each attempt's result to the
 * server and as an `attempt` event, and settles with the authenticated socket or a coded error.
 *
 * A socket whose punch was clean (our first SYN never refused or replaced) is handed over as soon as the other
 * side's proof checks out, and the result tells the server so (`committed`); any other socket is held until the
 * server's `end ok` says the other side verified our proof too (a NAT may black-hole one direction after a
 * messy simultaneous open).
 */
import { TcpPunchError } from '../errors.js';
import { DIRECT_AUTH_TIMEOUT_MS, RESULT_GRACE_MS } from '../protocol/constants.js';
import { familyOf } from '../endpoint.js';
import { truncateUtf8, unmapAddress } from '../protocol/fields.js';
import type { Message, Msg } from '../protocol/messages.js';
import { AttemptRunner, outcomeOf } from './attempt.js';
import type { AttemptEnv, AttemptStart, AttemptSuccess } from './attempt.js';
import type { AttemptEvent, AttemptOutcome, DialResult, RelayEndInfo, Role } from './types.js';
import { joinRelay } from '../relay/relay-client.js';
import type { RelayTokenGrant } from '../relay/frames.js';

/** How a coordination talks to the rest of the peer. */
export interface CoordinationHooks {
  /** Sends on the control connection. */
  send(msg: Message): boolean;
  /** Sends on the control connection a message nobody waits for; it may share a segment with the next ones. */
  report(msg: Message): boolean;
  /** Emits an `attempt` event. */
  attempt(event: AttemptEvent): void;
  /** Relayed dials: the promise of the relay's `relay-end` notice for session `sessionId`. */
  relayEnd(sessionId: string): Promise<RelayEndInfo | undefined>;
}

type Step = AttemptStart | Msg<'prepare'> | Msg<'prepare-family'> | Msg<'punch'> | Msg<'end'>;

export class PeerCoordination {
  readonly key: string;
  readonly role: Role;
  readonly peerId: string;
  /** `direct`, or a relayed dial (`relay`, `relay-upgradable`). */
  readonly path: Msg<'coord'>['path'];
  /** The coordId of the relay-upgradable dial this direct dial upgrades, hex; '' for none. */
  readonly link: string;
  /** Settles with the socket, or rejects with a coded error carrying `attempts`. */
  readonly result: Promise<DialResult>;
  private readonly coordId: Uint8Array;
  /** Attempt 1 folded into `coord`, run by {@link begin}. */
  private readonly folded: [AttemptStart, Msg<'punch'>] | undefined;
  private readonly events: AttemptEvent[] = [];
  private readonly reported = new Set<number>();
  private runner: AttemptRunner | undefined;
  private punchMsg: Msg<'punch'> | undefined;
  /** Our side's authenticated socket, held until the server confirms that the other side authenticated too. */
  private won: DialResult | undefined;
  private preparedAt = 0;
  private settled = false;
  private held: (Step | RelayTokenGrant)[] | undefined;
  private relayAc: AbortController | undefined;
  private resolveFn!: (r: DialResult) => void;
  private rejectFn!: (e: Error) => void;
  private readonly timer: NodeJS.Timeout;

  constructor(
    coord: Msg<'coord'>,
    private readonly pairKey: Uint8Array,
    private readonly env: AttemptEnv,
    private readonly hooks: CoordinationHooks,
    private readonly startedAt: number,
  ) {
    this.coordId = coord.coordId;
    this.key = Buffer.from(coord.coordId).toString('hex');
    this.role = coord.role;
    this.peerId = coord.peer;
    this.path = coord.path;
    this.link = coord.link.some((b) => b !== 0) ? Buffer.from(coord.link).toString('hex') : '';
    const remote = coord.remote[0];
    if (coord.attempt > 0 && remote) {
      const { coordId, attempt, nonce } = coord;
      this.folded = [
        { coordId, attempt, nonce, token: new Uint8Array(16), port: 'warm' },
        { type: 'punch', coordId, attempt, mode: coord.mode, route: coord.route, remote, delayMs: coord.delayMs, timeoutMs: coord.punchTimeoutMs },
      ];
    }
    this.result = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.result.catch(() => undefined); // the responder side may not observe it
    // A safety net only: the server ends every coordination well before this.
    this.timer = setTimeout(
      () => this.cancel(new TcpPunchError('ETIMEDOUT', 'The dial deadline passed'), true),
      coord.timeoutMs + DIRECT_AUTH_TIMEOUT_MS + RESULT_GRACE_MS,
    );
  }

  /** True once settled. */
  get done(): boolean {
    return this.settled;
  }

  /**
   * Holds every server message until {@link open} (the responder's `accept` decision), so nothing of an attempt
   * runs, and no socket is handed over, before the dial is accepted.
   */
  hold(): void {
    this.held ??= [];
  }

  /** Starts attempt 1 when `coord` carried it (after {@link hold}, if the dial awaits a decision). */
  begin(): void {
    if (!this.folded) return;
    for (const step of this.folded) this.handle(step);
  }

  /** Releases held messages, in order. */
  open(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const msg of held) {
      if ('sessionId' in msg) this.relayGrant(msg);
      else this.handle(msg);
    }
  }

  /**
   * A relayed dial's grant: join the relay session with it and report the outcome like a punch attempt. The
   * session is named after this coordination, so the grant is matched by its `sessionId`.
   */
  relayGrant(grant: RelayTokenGrant): void {
    if (this.settled || this.path === 'direct' || this.relayAc) return;
    if (this.held) return void this.held.push(grant);
    const ac = (this.relayAc = new AbortController());
    this.preparedAt = performance.now();
    const server = grant.relay[0] ?? this.env.server;
    joinRelay({
      server,
      token: grant.token,
      signal: ac.signal,
      ...(this.env.localAddress ? { localAddress: this.env.localAddress } : {}),
    }).then(
      (conn) => {
        if (this.settled) return void conn.socket.destroy();
        this.hooks.send({ type: 'result', coordId: this.coordId, attempt: 1, outcome: 'ok', detail: '', committed: false });
        this.report(1, 'ok', undefined, 'Connected through the relay');
        this.settle();
        const joinMs = performance.now() - this.preparedAt;
        this.resolveFn({
          socket: conn.socket,
          path: 'relay',
          role: this.role,
          peerId: this.peerId,
          remote: server,
          attempt: 1,
          mode: 'relay',
          family: familyOf(unmapAddress(conn.socket.remoteAddress)) === 6 ? 6 : 4,
          timings: { totalMs: performance.now() - this.startedAt, observeMs: 0, delayMs: 0, punchMs: 0, handshakeMs: joinMs },
          relayEnd: this.hooks.relayEnd(conn.sessionId),
        });
      },
      (err: unknown) => {
        if (this.settled) return;
        const code = (err as { code?: string }).code;
        const message = err instanceof Error ? err.message : String(err);
        const outcome = outcomeOf(err);
        this.hooks.send({
          type: 'result', coordId: this.coordId, attempt: 1, outcome, detail: truncateUtf8(`${code ?? ''} ${message}`.trim(), 256), committed: false,
        });
        this.report(1, outcome, code, message);
      },
    );
  }

  /** Handles a server message addressed to this coordination. */
  handle(msg: Step): void {
    if (this.settled) return;
    if (!('type' in msg) || msg.type === 'prepare' || msg.type === 'prepare-family') {
      if (this.held) return void this.held.push(msg);
      return this.prepare(msg);
    }
    if (this.held && msg.type !== 'end') return void this.held.push(msg);
    switch (msg.type) {
      case 'punch':
        return this.punch(msg);
      case 'end':
        return this.ended(msg);
    }
  }

  /** Ends the dial locally (deadline, abort, control connection lost); tells the server when `notify`. */
  cancel(err: TcpPunchError, notify: boolean): void {
    if (this.settled) return;
    if (notify) this.hooks.send({ type: 'cancel', coordId: this.coordId, code: err.code, message: truncateUtf8(err.message, 256) });
    const outcome: AttemptOutcome = err.code === 'ETIMEDOUT' ? 'timeout' : err.code === 'ABORT_ERR' ? 'aborted' : 'error';
    this.reportCurrent(outcome, err.code, err.message);
    this.fail(err);
  }

  private prepare(msg: AttemptStart | Msg<'prepare-family'>): void {
    this.dropWon();
    if (this.runner) {
      this.reportCurrent('aborted', 'ERR_SUPERSEDED', `The server started attempt ${msg.attempt}: the other side was not ready`);
      this.runner.dispose();
    }
    // Dual-stack: an attempt in the other family runs from a fresh port in that family's environment.
    let env: AttemptEnv | undefined = this.env;
    let start: AttemptStart;
    if (!('family' in msg)) start = msg;
    else {
      start = { coordId: msg.coordId, attempt: msg.attempt, token: msg.token, nonce: msg.nonce, port: 'fresh' };
      if (msg.family !== this.env.family) env = this.env.other?.family === msg.family ? this.env.other : undefined;
    }
    const runner = new AttemptRunner(env ?? this.env, start);
    this.runner = runner;
    this.punchMsg = undefined;
    this.preparedAt = performance.now();
    if (!env) {
      const family = (msg as Msg<'prepare-family'>).family;
      return this.attemptFailed(runner, new TcpPunchError('ERR_FAMILY_UNAVAILABLE', `This peer has not registered IPv${family}`));
    }
    runner.observe().catch((err: unknown) => this.attemptFailed(runner, err));
  }

  private punch(msg: Msg<'punch'>): void {
    const runner = this.runner;
    if (!runner || runner.attempt !== msg.attempt || this.punchMsg) return;
    this.punchMsg = msg;
    runner.punch(msg, { pairKey: this.pairKey, role: this.role }).then(
      (ok) => {
        if (this.settled || this.runner !== runner) return void ok.socket.destroy();
        // A committed result only informs the server (nobody waits for it); an uncommitted one decides the `end ok`
        // both sides wait for.
        const result = { type: 'result', coordId: this.coordId, attempt: msg.attempt, outcome: 'ok', detail: '', committed: ok.clean } as const;
        if (ok.clean) this.hooks.report(result);
        else this.hooks.send(result);
        // Receiving the other side's frame proves only the inbound direction: our own frame may be black-holed (a
        // NAT that drops our side of a half-broken simultaneous open as INVALID, seen only after a refused or
        // replaced SYN). A clean punch is handed over at once; otherwise the server's `end ok` says the other side
        // verified our frame too, and until then the socket is held, and dropped if the attempt fails.
        // Nobody listens on the socket while it is held: keep its error (a reset by the other side) for confirmed().
        ok.socket.on('error', this.onHeldError);
        if (ok.warm) this.releaseOnClose(ok);
        this.won = {
          socket: ok.socket,
          path: 'direct',
          role: this.role,
          peerId: this.peerId,
          remote: ok.remote,
          attempt: msg.attempt,
          mode: msg.mode,
          family: ok.family,
          timings: {
            totalMs: performance.now() - this.startedAt,
            observeMs: ok.observeMs,
            delayMs: ok.delayMs,
            punchMs: ok.punchMs,
            handshakeMs: ok.handshakeMs,
          },
        };
        if (ok.clean) this.confirmed();
      },
      (err: unknown) => this.attemptFailed(runner, err),
    );
  }

  /** Tells the server when a socket punched from the warm port closes: the pair's 4-tuples are free again. */
  private releaseOnClose(ok: AttemptSuccess): void {
    ok.socket.once('close', () => void this.hooks.report({ type: 'release', coordId: this.coordId }));
  }

  /** The server confirmed both sides: hand the held socket over. */
  private heldError: Error | undefined;
  private readonly onHeldError = (err: Error): void => {
    this.heldError ??= err;
  };

  private confirmed(): void {
    const won = this.won!;
    this.won = undefined;
    won.socket.off('error', this.onHeldError);
    if (won.socket.destroyed) {
      // The other side already closed it (e.g. a relay-first stream that finished on the relay): nothing to hand over.
      const code = (this.heldError as { code?: string } | undefined)?.code ?? 'ECONNRESET';
      this.report(won.attempt, 'rst', code, 'The punched socket closed before the dial was confirmed');
      this.fail(new TcpPunchError(code, 'The punched socket closed before the dial was confirmed'));
      return;
    }
    this.report(won.attempt, 'ok', undefined, 'Connected');
    this.runner?.dispose();
    this.runner = undefined;
    this.settle();
    won.timings.totalMs = performance.now() - this.startedAt;
    this.resolveFn(won);
  }

  /** The attempt we won on our side failed on the other side (the server moved on or ended the dial). */
  private dropWon(): void {
    const won = this.won;
    if (!won) return;
    this.won = undefined;
    won.socket.off('error', this.onHeldError);
    won.socket.destroy();
    this.report(won.attempt, 'auth-failed', 'ERR_HANDSHAKE_FAILED', 'The other side did not authenticate this socket');
  }

  private attemptFailed(runner: AttemptRunner, err: unknown): void {
    if (this.settled || this.runner !== runner) return;
    const outcome = outcomeOf(err);
    const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
    const message = err instanceof Error ? err.message : String(err);
    this.hooks.send({
      type: 'result',
      coordId: this.coordId,
      attempt: runner.attempt,
      outcome,
      detail: truncateUtf8(`${code ?? ''} ${message}`.trim(), 256),
      committed: false,
    });
    this.report(runner.attempt, outcome, code, message);
    runner.dispose();
  }

  private ended(msg: Msg<'end'>): void {
    if (msg.outcome === 'ok' && this.won) return this.confirmed();
    this.dropWon();
    const offline = msg.code === 'ERR_PEER_OFFLINE';
    this.reportCurrent(offline ? 'peer-offline' : msg.outcome === 'cancelled' ? 'aborted' : 'error', msg.code, msg.message);
    this.fail(new TcpPunchError(msg.code, msg.message));
  }

  private fail(err: TcpPunchError): void {
    if (this.settled) return;
    this.dropWon();
    this.relayAc?.abort(err);
    this.runner?.dispose();
    this.runner = undefined;
    this.settle();
    Object.assign(err, { peerId: this.peerId, attempts: [...this.events] });
    this.rejectFn(err);
  }

  private settle(): void {
    this.settled = true;
    clearTimeout(this.timer);
  }

  /** Reports the running attempt, if it has not been reported yet. */
  private reportCurrent(outcome: AttemptOutcome, code: string | undefined, message: string): void {
    if (this.runner && !this.reported.has(this.runner.attempt)) this.report(this.runner.attempt, outcome, code, message);
    else if (this.relayAc && !this.reported.has(1)) this.report(1, outcome, code, message);
    // Ended before an attempt ran on this side (ERR_PUNCH_UNLIKELY decided from the warm mappings, say): it was attempt 1.
    else if (this.path === 'direct' && this.reported.size === 0) this.report(1, outcome, code, message);
  }

  private report(attempt: number, outcome: AttemptOutcome, code: string | undefined, message: string): void {
    if (this.reported.has(attempt)) return;
    this.reported.add(attempt);
    const p = this.punchMsg?.attempt === attempt ? this.punchMsg : undefined;
    const event: AttemptEvent = {
      peerId: this.peerId,
      coordId: this.key,
      role: this.role,
      attempt,
      mode: this.path === 'direct' ? p?.mode : 'relay',
      route: p?.route,
      remote: p?.remote,
      family: this.path !== 'direct' || this.runner?.attempt !== attempt ? undefined : this.runner.family,
      outcome,
      code,
      message,
      elapsedMs: performance.now() - this.preparedAt,
    };
    this.events.push(event);
    this.hooks.attempt(event);
  }
}
