/**
 * joinRelay(): the client side of a relay session. Connects to the relay (or uses a connected socket), sends the
 * `relay-join` frame with the token the rendezvous server issued, and resolves once `relay-paired` arrives, with a
 * socket that carries nothing but the other peer's bytes from then on.
 *
 * No byte is lost at the switch: the paired frame is read with the protocol's one-message reader, which puts any
 * bytes that followed it in the same read back into the socket (`unshift`), so the first `data` event or `read()`
 * of the caller sees them. The socket is switched to `allowHalfOpen`, so the other peer's FIN ends only the
 * readable side, as the relay propagates half-closes.
 *
 * Errors (TcpPunchError): the relay's refusal code (`ERR_RELAY_TOKEN_INVALID`, `ERR_RELAY_JOIN_TIMEOUT`, ... see
 * relay-service.ts), `ETIMEDOUT` (no `relay-paired` within `timeoutMs`), `ABORT_ERR`, an errno name from connect,
 * `ECONNRESET` (the relay closed first), `ERR_UNEXPECTED_MESSAGE`, or a frame decoding code.
 */
import { connect, isIP, Socket } from 'node:net';

import { validateEndpoint, validateInteger, type Endpoint } from '../endpoint.js';
import { AbortError, TcpPunchError, invalidArgType, invalidArgValue, throwIfAborted } from '../errors.js';
import { fastOpenSocket } from '../fast-open.js';
import { readMessage } from '../protocol/stream.js';
import type { RelayMsg } from '../protocol/messages.js';
import { decodeRelay, encodeRelayFrame } from './frames.js';
import { MAX_TOKEN_LENGTH } from './tokens.js';

/** Options of {@link joinRelay}. */
export interface JoinRelayOptions {
  /** The relay's address: the rendezvous server's port unless the server named another. Names are resolved. */
  server?: Endpoint;
  /** A socket already connected to the relay, instead of `server` (e.g. made from a reusable port). */
  socket?: Socket;
  /** Local address to connect from (with `server`), e.g. to pick an interface; default: the OS's choice. */
  localAddress?: string;
  /** The token from the server's `relay-token` message. */
  token: string;
  /**
   * Send the join in the SYN (TCP Fast Open, with `server` given as an IP address; see lib/fast-open.ts); default
   * true. Off, the join follows an ordinary handshake. Linux itself stops using it towards a relay whose path
   * dropped a SYN with data.
   */
  fastOpen?: boolean;
  /** Deadline for connecting and pairing, in ms; default 35000 (the relay's default join window is 30 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A paired relay connection. */
export interface RelayConnection {
  /** Carries the other peer's bytes from now on; may already hold some (read it as usual). */
  socket: Socket;
  sessionId: string;
  /** The side this peer holds. */
  side: 'a' | 'b';
  /** The other peer's id. */
  peer: string;
  /** The session's limits as the relay announced them (0: none): bytes both ways together, and duration. */
  maxBytes: number;
  maxDurationMs: number;
}

/** Joins a relay session and resolves once it is paired. */
export async function joinRelay(options: JoinRelayOptions): Promise<RelayConnection> {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
  const { server, token, timeoutMs = 35_000, signal, fastOpen = true } = options;
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
    throw invalidArgType('options.token', `a string of 1..${MAX_TOKEN_LENGTH} characters`, token);
  validateInteger(timeoutMs, 'options.timeoutMs', 1, 2 ** 31 - 1);
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an AbortSignal', signal);
  if (typeof fastOpen !== 'boolean') throw invalidArgType('options.fastOpen', 'a boolean', fastOpen);
  if (options.socket !== undefined) {
    if (!(options.socket instanceof Socket)) throw invalidArgType('options.socket', 'a net.Socket', options.socket);
  } else {
    validateEndpoint(server, 'options.server');
    if (options.localAddress !== undefined && (typeof options.localAddress !== 'string' || isIP(options.localAddress) === 0))
      throw invalidArgValue('options.localAddress', 'must be a numeric IP address', options.localAddress);
  }
  throwIfAborted(signal);

  const deadline = Date.now() + timeoutMs;
  const local = options.localAddress ? { localAddress: options.localAddress } : {};
  // The join rides in the SYN where the relay takes Fast Open: pairing then needs no round trip of handshake first.
  const fast = options.socket || !fastOpen ? undefined : fastOpenSocket(server!, { ...local, allowHalfOpen: true });
  // No Nagle on a relay leg, as on the relay's own side: a small write (a request, a keystroke) leaves at once.
  const socket = options.socket ?? fast ?? connect({ host: server!.host, port: server!.port, allowHalfOpen: true, noDelay: true, ...local });
  socket.allowHalfOpen = true;
  if (fast) fast.setNoDelay(true);
  try {
    if (socket.connecting) await connected(socket, timeoutMs, signal);
    socket.write(encodeRelayFrame('relay-join', { token }));
    const msg = await readMessage(socket, { timeoutMs: Math.max(1, deadline - Date.now()), signal, maxFrameSize: 4096 });
    if (msg.type === 'error') throw new TcpPunchError(msg.code, `relay refused: ${msg.message}`);
    if (msg.type !== 'relay-paired') throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `expected relay-paired, got ${msg.type}`);
    const paired = decodeRelay(msg as RelayMsg);
    if (paired.name !== 'relay-paired') throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', 'expected relay-paired');
    const { sessionId, side, peer, maxBytes, maxDurationMs } = paired;
    return { socket, sessionId, side, peer, maxBytes, maxDurationMs };
  } catch (err) {
    socket.destroy();
    throw coded(err);
  }
}

/** A socket error (a Fast Open leg learns of a refused connect only here) as a TcpPunchError naming the relay. */
function coded(err: unknown): unknown {
  if (err instanceof TcpPunchError || !(err instanceof Error) || err.name === 'AbortError') return err;
  const code = (err as NodeJS.ErrnoException).code ?? 'ECONNRESET';
  return new TcpPunchError(code, `cannot reach the relay: ${err.message}`, { cause: err });
}

function connected(socket: Socket, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onConnect = (): void => done();
    const onError = (err: NodeJS.ErrnoException): void =>
      done(new TcpPunchError(err.code ?? 'ECONNREFUSED', `cannot reach the relay: ${err.message}`, { cause: err }));
    const onAbort = (): void => done(new AbortError(undefined, signal?.reason));
    const timer = setTimeout(() => done(new TcpPunchError('ETIMEDOUT', `no connection to the relay within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
