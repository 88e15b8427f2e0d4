/**
 * One punch attempt on one side. From a fresh port: bind a reusable port and open the observe connection from it.
 * From the warm port (the control connection's, whose mapping the server already knows): nothing to prepare. Then,
 * when the server says `punch`, wait the synchronisation delay, punch, and authenticate the socket.
 *
 * `dispose()` releases everything the attempt holds except a socket it has already returned.
 */
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { DIRECT_AUTH_TIMEOUT_MS } from '../protocol/constants.js';
import { unmapAddress } from '../protocol/fields.js';
import type { Endpoint } from '../endpoint.js';
import { encodeMessage } from '../protocol/messages.js';
import type { Msg } from '../protocol/messages.js';
import { readMessage } from '../protocol/stream.js';
import { punchDetailed } from '../punch.js';
import { bindReusable } from '../reusable-port.js';
import type { ReusablePort } from '../reusable-port.js';
import { directAuth } from './handshake.js';
import type { AttemptOutcome, NatFiltering, NatMapping, Role } from './types.js';

/** Where and how attempts run; fixed for a peer's control connection. */
export interface AttemptEnv {
  /** The server's numeric endpoint (observe connections go there). */
  server: Endpoint;
  family: 4 | 6;
  localAddress: string | undefined;
  punch: { retryDelayMs?: number; ttl?: number };
  /** This network's NAT mapping as last measured (PeerOptions.natProbe), reported with each observation. */
  natMapping: () => NatMapping;
  /** This network's inbound filtering as last measured, reported with the mapping. */
  natFiltering: () => NatFiltering;
  /** The control connection's reusable port, when it has one. */
  warm: WarmSlot | undefined;
  /** Dual-stack: the environment of attempts in the other family, once registered (lib/peer/families.ts). */
  other?: AttemptEnv | undefined;
}

/**
 * The warm port and its one-punch-at-a-time rule: a second listener on the port would share its accepts
 * (SO_REUSEPORT balances them), so a punch that finds the port busy fails at once and the server moves on.
 */
export class WarmSlot {
  private busy = false;

  constructor(
    readonly address: string,
    readonly port: number,
  ) {}

  /** Takes the port; false when another punch holds it. */
  claim(): boolean {
    if (this.busy) return false;
    this.busy = true;
    return true;
  }

  release(): void {
    this.busy = false;
  }
}

/** What an attempt needs from `prepare` (or from a `coord` that folds attempt 1 in). */
export type AttemptStart = Pick<Msg<'prepare'>, 'coordId' | 'attempt' | 'nonce' | 'token' | 'port'>;

/** A successful attempt. */
export interface AttemptSuccess {
  socket: Socket;
  remote: Endpoint;
  observeMs: number;
  delayMs: number;
  punchMs: number;
  handshakeMs: number;
  /** Punched from the warm port. */
  warm: boolean;
  /** The IP version of the socket. */
  family: 4 | 6;
  /**
   * Our first SYN was never refused or replaced (one connect() in all): the NAT state behind this socket is the
   * one our first SYN created, so a proof received on it means the path works both ways (see docs/PROTOCOL.md).
   */
  clean: boolean;
}

const OBSERVE_TIMEOUT_MS = 5000;

export class AttemptRunner {
  private readonly ac = new AbortController();
  private port: ReusablePort | undefined;
  private observer: Socket | undefined;
  private observeMs = 0;
  private disposed = false;
  private warmHeld = false;

  constructor(
    private readonly env: AttemptEnv,
    readonly prepare: AttemptStart,
  ) {}

  /** The attempt number. */
  get attempt(): number {
    return this.prepare.attempt;
  }

  /** The IP version this attempt runs in. */
  get family(): 4 | 6 {
    return this.env.family;
  }

  /**
   * Fresh port: binds it and registers its public mapping with the server. Warm port: takes it (the server knows
   * its mapping already).
   * @throws TcpPunchError `ERR_WARM_PORT_BUSY`, `ERR_NO_WARM_PORT`, or what binding and observing throw.
   */
  async observe(): Promise<void> {
    if (this.prepare.port === 'warm') return this.claimWarm();
    const t0 = performance.now();
    const { env } = this;
    const port = await bindReusable({ family: env.family, ...(env.localAddress ? { address: env.localAddress } : {}) });
    if (this.disposed) port.close();
    this.check();
    this.port = port;
    const sock = await port.connect(env.server, { timeoutMs: OBSERVE_TIMEOUT_MS, signal: this.ac.signal });
    sock.on('error', () => undefined);
    if (this.disposed) return void sock.destroy();
    this.observer = sock;
    const local = { host: unmapAddress(sock.localAddress), port: port.port };
    sock.write(
      encodeMessage({
        type: 'observe',
        coordId: this.prepare.coordId,
        attempt: this.prepare.attempt,
        token: this.prepare.token,
        private: local.host ? [local] : [],
        mapping: env.natMapping(),
        filtering: env.natFiltering(),
      }),
    );
    const reply = await readMessage(sock, { timeoutMs: OBSERVE_TIMEOUT_MS, signal: this.ac.signal, maxFrameSize: 512 });
    if (reply.type === 'error') throw new TcpPunchError(reply.code, `Observe refused: ${reply.message}`);
    if (reply.type !== 'observed') throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `Unexpected ${reply.type} on the observe connection`);
    sock.resume(); // the server only closes it from now on
    this.observeMs = performance.now() - t0;
  }

  /** Waits the server's delay, punches towards `msg.remote` from the port, and authenticates the socket. */
  async punch(msg: Msg<'punch'>, auth: { pairKey: Uint8Array; role: Role }): Promise<AttemptSuccess> {
    const warm = this.warmHeld ? this.env.warm : undefined;
    if (!this.port && !warm) throw new TcpPunchError('ERR_NOT_PREPARED', 'punch before the port was observed');
    await sleep(msg.delayMs, this.ac.signal);
    const t1 = performance.now();
    const verifyStart = new WeakMap<Socket, number>();
    let res;
    try {
      res = await punchDetailed({
        // The warm port: the punch opens its own listener next to the control connection (both reusable).
        ...(warm ? { localAddress: warm.address, localPort: warm.port } : { port: this.port }),
        remote: msg.remote,
        timeoutMs: Math.max(1, msg.timeoutMs),
        signal: this.ac.signal,
        ...this.env.punch,
        // In every mode: the peer's NAT may give its connection to us another port than the server saw (symmetric
        // mapping against a side that filters nothing), and anyone else behind the peer's address (a carrier NAT)
        // fails direct-auth, is closed, and does not end the attempt.
        acceptFrom: 'host',
        verify: async (socket, signal) => {
          verifyStart.set(socket, performance.now());
          // Without Nagle, the first bytes either side writes leave at once instead of waiting for the ACK of the proof.
          socket.setNoDelay(true);
          await this.authenticate(socket, msg, auth, signal);
        },
        // Half-close works the same on every path: relayed sockets allow half-open too.
        allowHalfOpen: true,
      });
    } finally {
      this.releaseWarm(); // the punch's listener is gone: another punch may use the port
    }
    const t3 = performance.now();
    const t2 = verifyStart.get(res.socket) ?? t3;
    try {
      this.check();
    } catch (err) {
      res.socket.destroy();
      throw err;
    }
    return {
      socket: res.socket,
      remote: res.remote,
      observeMs: this.observeMs,
      delayMs: msg.delayMs,
      punchMs: t2 - t1,
      handshakeMs: t3 - t2,
      warm: warm !== undefined,
      family: this.env.family,
      clean: res.attempts === 1,
    };
  }

  /** Aborts whatever runs and releases the port and the observe connection. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ac.abort();
    this.observer?.destroy();
    this.port?.close();
    this.releaseWarm();
  }

  /** Proves the pairing on the punched socket: our proof goes out at once, the other side's is checked. */
  private authenticate(socket: Socket, msg: Msg<'punch'>, auth: { pairKey: Uint8Array; role: Role }, signal: AbortSignal): Promise<void> {
    return directAuth(socket, {
      pairKey: auth.pairKey,
      coordId: msg.coordId,
      attempt: msg.attempt,
      role: auth.role,
      nonce: this.prepare.nonce,
      timeoutMs: DIRECT_AUTH_TIMEOUT_MS,
      signal,
    });
  }

  private claimWarm(): void {
    this.check();
    const slot = this.env.warm;
    if (!slot) throw new TcpPunchError('ERR_NO_WARM_PORT', 'The server asked for the warm port, but this connection has none');
    if (!slot.claim()) throw new TcpPunchError('ERR_WARM_PORT_BUSY', 'Another punch is using the warm port');
    this.warmHeld = true;
  }

  private releaseWarm(): void {
    if (!this.warmHeld) return;
    this.warmHeld = false;
    this.env.warm?.release();
  }

  private check(): void {
    if (this.disposed) throw new TcpPunchError('ABORT_ERR', 'The attempt was superseded or cancelled');
  }
}

/** Classifies an attempt failure into the reasons surfaced in `attempt` events. */
export function outcomeOf(err: unknown): Exclude<AttemptOutcome, 'peer-offline'> {
  const e = err as { code?: unknown; lastErrors?: Record<string, string> };
  const last = Object.values(e.lastErrors ?? {});
  switch (e.code) {
    case 'ETIMEDOUT':
      if (last.includes('ECONNRESET')) return 'rst';
      if (last.includes('ECONNREFUSED')) return 'refused';
      return 'timeout';
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'rst';
    case 'ERR_AUTH_FAILED':
      return 'auth-failed';
    case 'ABORT_ERR':
      return 'aborted';
    default:
      return 'error';
  }
}


function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return signal.aborted ? Promise.reject(new TcpPunchError('ABORT_ERR', 'aborted')) : Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new TcpPunchError('ABORT_ERR', 'aborted'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
