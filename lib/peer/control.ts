/**
 * The peer's control connection to the rendezvous server: connect, register (hello → challenge → auth →
 * welcome, checking the server's proof), then keepalive. One instance is one connection; the Peer reconnects.
 */
import { EventEmitter } from 'node:events';
import { connect } from 'node:net';
import type { Socket } from 'node:net';

import { familyOf, resolveEndpoints } from '../endpoint.js';
import type { Endpoint } from '../endpoint.js';
import { TcpPunchError } from '../errors.js';
import { clientProof, random, safeEqual, serverProof, sessionKey } from '../protocol/crypto.js';
import { unmapAddress } from '../protocol/fields.js';
import type { Message } from '../protocol/messages.js';
import { FramedSocket } from '../protocol/stream.js';
import { bindReusable } from '../reusable-port.js';

/** Options of {@link ControlConnection.open}. */
export interface ControlOptions {
  server: Endpoint;
  id: string;
  /** Secret mode: the id key. */
  idKey: Uint8Array | undefined;
  /** Open mode: the token from an earlier registration. */
  token: Uint8Array | undefined;
  localAddress: string | undefined;
  timeoutMs: number;
}

/** Events of a {@link ControlConnection}. */
export interface ControlEvents {
  message: [msg: Message];
  /** The connection closed; `err` is the server's `error` frame as a TcpPunchError, or the socket error. */
  close: [err: Error | undefined];
}

/** Codes after which reconnecting cannot help. */
export const FATAL_CODES: ReadonlySet<string> = new Set([
  'ERR_AUTH_FAILED',
  'ERR_AUTH_REQUIRED',
  'ERR_ID_TAKEN',
  'ERR_REPLACED',
  'ERR_SERVER_AUTH_FAILED',
  'ERR_UNSUPPORTED_VERSION',
]);

/** The reusable local port a control connection leaves from: punches can start from it, its mapping known. */
export interface WarmPort {
  /** The bound address (the wildcard unless `localAddress` was given) and port. */
  readonly address: string;
  readonly port: number;
}

const SOFTWARE = 'tcp-punch/0.1';
/** Pings sent back to back after registration (each carries the round trip of the one before). */
const WARMUP_PINGS = 1;

/** A registered control connection. */
export class ControlConnection extends EventEmitter<ControlEvents> {
  private lastSeen = performance.now();
  private closeError: Error | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private seq = 0;
  private backlog: Message[] | undefined = [];
  private isClosed = false;
  private pingSentAt = 0;
  private pingSeq = -1;
  private lastRttUs = 0;
  /** Quick pings still to send after registration, so that the server's first estimates are not a cold start's. */
  private warmup = WARMUP_PINGS;
  /** How the server authenticated this connection: `secret` (the server has one), `none` or `token` (open). */
  auth: 'none' | 'secret' | 'token' = 'none';

  private constructor(
    private readonly framed: FramedSocket,
    /** Key that unwraps pair keys sent on this connection. */
    readonly sessionKey: Uint8Array,
    /** Open mode: the id's token (issued now or presented). */
    readonly token: Uint8Array | undefined,
    /** This connection's source address as the server sees it. */
    readonly observed: Endpoint,
    /** The server's numeric endpoint. */
    readonly server: Endpoint,
    readonly family: 4 | 6,
    keepaliveMs: number,
    /** The warm port, when the connection leaves from a reusable one. */
    readonly warm: WarmPort | undefined,
    /** The server's NAT probe ports from `welcome` (undefined: it runs none). */
    readonly probePorts: [number, number] | undefined,
    firstRttMs: number,
  ) {
    super();
    framed.on('message', (msg) => this.onMessage(msg));
    framed.on('close', (err) => {
      this.isClosed = true;
      clearInterval(this.keepalive);
      this.emit('close', this.closeError ?? err);
    });
    const every = Math.max(100, keepaliveMs);
    this.keepalive = setInterval(() => {
      if (performance.now() - this.lastSeen > 3 * every) {
        this.closeError ??= new TcpPunchError('ETIMEDOUT', 'The server stopped answering keepalives');
        framed.destroy();
        return;
      }
      this.ping();
    }, every);
    this.keepalive.unref();
    // The server times punches by the round trips peers report: hand it a few samples at once.
    this.lastRttUs = Math.round(firstRttMs * 1000);
    this.ping();
  }

  private ping(): void {
    this.pingSeq = this.seq = (this.seq + 1) >>> 0;
    this.pingSentAt = performance.now();
    this.send({ type: 'ping', seq: this.seq, rttUs: Math.min(this.lastRttUs, 0xffffffff) });
  }

  /**
   * Connects and registers.
   * @throws TcpPunchError `ERR_SERVER_UNREACHABLE` (cause: the socket error), `ETIMEDOUT`, or the server's code
   * (`ERR_AUTH_FAILED`, `ERR_ID_TAKEN`, ...), `ERR_AUTH_REQUIRED` (the server wants a secret we lack),
   * `ERR_SERVER_AUTH_FAILED` (the server's proof is wrong: not the server we share a key with).
   */
  static async open(o: ControlOptions): Promise<ControlConnection> {
    const { socket, warm } = await dialWarm(o);
    const framed = new FramedSocket(socket);
    const inbox = new Inbox(framed, o.timeoutMs);
    try {
      const clientNonce = random(16);
      const local = { host: unmapAddress(socket.localAddress), port: socket.localPort ?? 0 };
      const helloAt = performance.now();
      framed.send({
        type: 'hello', id: o.id, nonce: clientNonce, software: SOFTWARE,
        private: local.host && local.port ? [local] : [], warm: warm !== undefined,
      });
      const challenge = await inbox.next('challenge');
      const firstRttMs = performance.now() - helloAt;
      let key: Uint8Array | undefined;
      if (challenge.auth === 'secret') {
        if (!o.idKey) throw new TcpPunchError('ERR_AUTH_REQUIRED', 'The server requires a secret (or id key)');
        key = o.idKey;
      } else if (challenge.auth === 'token') {
        key = o.token;
      }
      const proof = key ? clientProof(key, challenge.nonce, clientNonce, o.id) : new Uint8Array(0);
      framed.send({ type: 'auth', proof });
      const welcome = await inbox.next('welcome');
      const idKey = challenge.auth === 'none' ? welcome.token : key!;
      if (idKey.length !== 32 && challenge.auth === 'none')
        throw new TcpPunchError('ERR_SERVER_AUTH_FAILED', 'The server issued no token');
      if (!safeEqual(welcome.proof, serverProof(idKey, challenge.nonce, clientNonce, o.id)))
        throw new TcpPunchError('ERR_SERVER_AUTH_FAILED', "The server's proof is wrong: it does not know this id's key");
      const leftovers = inbox.dispose();
      const conn = new ControlConnection(
        framed,
        sessionKey(idKey, challenge.nonce, clientNonce),
        challenge.auth === 'secret' ? undefined : Uint8Array.from(idKey),
        welcome.observed,
        { host: unmapAddress(socket.remoteAddress), port: socket.remotePort ?? o.server.port },
        socket.remoteFamily === 'IPv6' && !socket.remoteAddress?.startsWith('::ffff:') ? 6 : 4,
        welcome.keepaliveMs,
        warm,
        welcome.probePort1 && welcome.probePort2 ? [welcome.probePort1, welcome.probePort2] : undefined,
        firstRttMs,
      );
      conn.auth = challenge.auth;
      for (const m of leftovers) conn.onMessage(m);
      return conn;
    } catch (err) {
      inbox.dispose();
      framed.destroy();
      throw err;
    }
  }

  /** True once the connection has closed (`close` has been emitted). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Starts delivering `message` events (messages that arrived since the handshake come first). */
  start(): void {
    const backlog = this.backlog ?? [];
    this.backlog = undefined;
    for (const msg of backlog) this.emit('message', msg);
  }

  /** Sends a message; false once closing. */
  send(msg: Message): boolean {
    return this.framed.send(msg);
  }

  /** Sends a report: a message nobody waits for, coalesced with the next ones (see FramedSocket.report). */
  report(msg: Message): boolean {
    return this.framed.report(msg);
  }

  /** Closes the connection; resolves once the socket is closed. */
  close(): Promise<void> {
    const s = this.framed.socket;
    if (s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      s.once('close', () => resolve());
      this.framed.end();
    });
  }

  private onMessage(msg: Message): void {
    this.lastSeen = performance.now();
    if (msg.type === 'pong') {
      if (msg.seq !== this.pingSeq) return;
      this.lastRttUs = Math.round((this.lastSeen - this.pingSentAt) * 1000);
      if (this.warmup-- > 0) this.ping();
      return;
    }
    if (msg.type === 'ping') return void this.send({ type: 'pong', seq: msg.seq });
    if (msg.type === 'error') this.closeError ??= new TcpPunchError(msg.code, `Server: ${msg.message}`);
    if (this.backlog) this.backlog.push(msg);
    else this.emit('message', msg);
  }
}

/** Handshake helper: waits for one expected message; an `error` frame, a close or the deadline reject. */
class Inbox {
  private queue: Message[] = [];
  private waiter: (() => void) | undefined;
  private closed: Error | undefined;
  private readonly deadline: number;
  private readonly onMessage = (m: Message): void => {
    this.queue.push(m);
    this.waiter?.();
  };
  private readonly onClose = (err: Error | undefined): void => {
    this.closed = err ?? new TcpPunchError('ECONNRESET', 'The server closed the connection during the handshake');
    this.waiter?.();
  };

  constructor(
    private readonly framed: FramedSocket,
    timeoutMs: number,
  ) {
    this.deadline = performance.now() + timeoutMs;
    framed.on('message', this.onMessage);
    framed.on('close', this.onClose);
  }

  async next<T extends 'challenge' | 'welcome'>(type: T): Promise<Extract<Message, { type: T }>> {
    while (this.queue.length === 0) {
      if (this.closed) throw this.closed;
      const left = this.deadline - performance.now();
      if (left <= 0) throw new TcpPunchError('ETIMEDOUT', 'The server did not complete the handshake in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const msg = this.queue.shift()!;
    if (msg.type === 'error') throw new TcpPunchError(msg.code, `Server: ${msg.message}`);
    if (msg.type !== type) throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `Expected ${type}, got ${msg.type}`);
    return msg as Extract<Message, { type: T }>;
  }

  /** Detaches; returns messages received but not consumed. */
  dispose(): Message[] {
    this.framed.removeListener('message', this.onMessage);
    this.framed.removeListener('close', this.onClose);
    return this.queue.splice(0);
  }
}

/**
 * Connects from a reusable port (SO_REUSEADDR + SO_REUSEPORT), so that punches can later leave from the same port
 * and the server's view of this connection is the mapping they will use. Without a usable addon, a plain socket.
 */
async function dialWarm(o: ControlOptions): Promise<{ socket: Socket; warm: WarmPort | undefined }> {
  let targets: Endpoint[];
  try {
    targets = await resolveEndpoints([o.server]);
  } catch (err) {
    throw new TcpPunchError('ERR_SERVER_UNREACHABLE', `Cannot resolve the server: ${(err as Error).message}`, { cause: err });
  }
  const wanted = o.localAddress ? familyOf(o.localAddress) : familyOf(targets[0]?.host ?? '');
  const target = targets.find((t) => familyOf(t.host) === wanted);
  if (!target) return { socket: await dialServer(o), warm: undefined };
  let port;
  try {
    port = await bindReusable({ family: wanted || 4, listen: false, ...(o.localAddress ? { address: o.localAddress } : {}) });
  } catch {
    return { socket: await dialServer(o), warm: undefined }; // no reusable port here: register without one
  }
  try {
    const socket = await port.connect(target, { timeoutMs: o.timeoutMs });
    socket.setNoDelay(true);
    return { socket, warm: { address: port.address, port: port.port } };
  } catch (err) {
    const e = err as TcpPunchError;
    const cause = e.code === 'ETIMEDOUT' ? new TcpPunchError('ETIMEDOUT', 'connect timed out') : e;
    const text = e.code === 'ETIMEDOUT' ? `No connection to the server within ${o.timeoutMs} ms` : `Cannot reach the server: ${e.message}`;
    throw new TcpPunchError('ERR_SERVER_UNREACHABLE', text, { cause, errno: e.code });
  } finally {
    port.close(); // the connected socket keeps the port
  }
}

/**
 * A plain TCP connection to the server (from `localAddress` when given), within `timeoutMs`.
 * @throws TcpPunchError `ERR_SERVER_UNREACHABLE` (the errno as `errno`, ETIMEDOUT as the cause of a timeout), or
 *   `ABORT_ERR` when `signal` fires first; the socket is destroyed either way.
 */
export function dialServer(o: {
  server: Endpoint;
  localAddress: string | undefined;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: o.server.host,
      port: o.server.port,
      noDelay: true,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
    });
    const fail = (err: TcpPunchError): void => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new TcpPunchError('ERR_SERVER_UNREACHABLE', `No connection to the server within ${o.timeoutMs} ms`, { cause: new TcpPunchError('ETIMEDOUT', 'connect timed out') })),
      o.timeoutMs,
    );
    const onAbort = (): void => fail(new TcpPunchError('ABORT_ERR', 'aborted'));
    const onError = (err: NodeJS.ErrnoException): void =>
      fail(new TcpPunchError('ERR_SERVER_UNREACHABLE', `Cannot reach the server: ${err.message}`, { cause: err, errno: err.code }));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      resolve(socket);
    });
  });
}

