/**
 * One punch attempt on one side: bind a fresh reusable port, open the observe connection from it, then (when the
 * server says `punch`) wait the synchronisation delay, punch, and authenticate the socket.
 *
 * `dispose()` releases everything the attempt holds except a socket it has already returned.
 */
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { DIRECT_AUTH_TIMEOUT_MS } from '../protocol/constants.js';
import { unmapAddress } from '../protocol/fields.js';
import type { Endpoint } from '../protocol/fields.js';
import { encodeMessage } from '../protocol/messages.js';
import type { Msg } from '../protocol/messages.js';
import { readMessage } from '../protocol/stream.js';
import { punchDetailed } from '../punch.js';
import { bindReusable } from '../reusable-port.js';
import type { ReusablePort } from '../reusable-port.js';
import { directAuth } from './handshake.js';
import type { AttemptOutcome, NatMapping, Role } from './types.js';

/** Where and how attempts run; fixed for a peer's control connection. */
export interface AttemptEnv {
  /** The server's numeric endpoint (observe connections go there). */
  server: Endpoint;
  family: 4 | 6;
  localAddress: string | undefined;
  punch: { retryDelayMs?: number; ttl?: number };
  /** This network's NAT mapping as last measured (PeerOptions.natProbe), reported with each observation. */
  natMapping: () => NatMapping;
}

/** A successful attempt. */
export interface AttemptSuccess {
  socket: Socket;
  remote: Endpoint;
  observeMs: number;
  delayMs: number;
  punchMs: number;
  handshakeMs: number;
}

const OBSERVE_TIMEOUT_MS = 5000;

export class AttemptRunner {
  private readonly ac = new AbortController();
  private port: ReusablePort | undefined;
  private observer: Socket | undefined;
  private observeMs = 0;
  private disposed = false;

  constructor(
    private readonly env: AttemptEnv,
    readonly prepare: Msg<'prepare'>,
  ) {}

  /** The attempt number. */
  get attempt(): number {
    return this.prepare.attempt;
  }

  /** Binds the port and registers its public mapping with the server. */
  async observe(): Promise<void> {
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
    if (!this.port) throw new TcpPunchError('ERR_NOT_PREPARED', 'punch before the port was observed');
    await sleep(msg.delayMs, this.ac.signal);
    const t1 = performance.now();
    const verifyStart = new WeakMap<Socket, number>();
    const res = await punchDetailed({
      port: this.port,
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
        await directAuth(socket, {
          pairKey: auth.pairKey,
          coordId: msg.coordId,
          attempt: msg.attempt,
          role: auth.role,
          nonce: this.prepare.nonce,
          timeoutMs: DIRECT_AUTH_TIMEOUT_MS,
          signal,
        });
      },
      // Half-close works the same on every path: relayed sockets allow half-open too.
      allowHalfOpen: true,
    });
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
    };
  }

  /** Aborts whatever runs and releases the port and the observe connection. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ac.abort();
    this.observer?.destroy();
    this.port?.close();
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
