/**
 * punch(): TCP simultaneous open from one local port towards the peer's endpoint(s).
 *
 * The addon listens on the local port and connects from it to every target at once, reconnecting after a
 * refusal until the deadline; the first connection to a target wins, through connect() or accept(). The winning
 * descriptor becomes an ordinary `net.Socket`, so a punched connection is exactly as fast as any Node socket.
 *
 * Errors (all {@link TcpPunchError} unless an argument is invalid):
 * - `ETIMEDOUT`: no connection within `timeoutMs`; `attempts` and `lastErrors` (per target) say what was seen.
 * - `ERR_AUTH_FAILED` (with `verify`): connections came, but none passed `verify` before the deadline.
 * - `ABORT_ERR`: the signal fired.
 * - an errno name from bind/listen (`EADDRINUSE`, `EACCES`...) or a non-retryable connect error.
 * - `ERR_NO_USABLE_ADDRESS`: no remote address of the local address family.
 */
import type { Socket } from 'node:net';
import { TcpPunchError, invalidArgType, invalidArgValue, throwIfAborted } from './errors.js';
import {
  type Endpoint,
  type Family,
  anyAddress,
  familyOf,
  formatEndpoint,
  resolveEndpoints,
  validateEndpoint,
  validateInteger,
  validatePort,
} from './endpoint.js';
import { DEFAULT_TIMEOUT_MS, type NativeConnection, runNative, validateSignal } from './native-op.js';
import { punchVerified } from './punch-verify.js';
import type { ReusablePort } from './reusable-port.js';

export type { ConnectOptions } from './native-op.js';

/** Options of {@link punch}. */
export interface PunchOptions {
  /** A port held with {@link bindReusable}: the punch uses its listener and binds its connectors to it. */
  port?: ReusablePort;
  /** Local port when no `port` is given; 0 or absent picks one. */
  localPort?: number;
  /** Local numeric address when no `port` is given; defaults to the wildcard of the remotes' family. */
  localAddress?: string;
  /** The peer's endpoint, or several candidates (the first to connect wins). Host names are resolved. */
  remote: Endpoint | Endpoint[];
  /** Overall deadline in ms (default 10000). */
  timeoutMs?: number;
  /**
   * Least time in ms from one connect to a target to the next after an RST or ICMP error aborted the attempt
   * (default 5; after the first 2 s at least 100). Paced start to start, so an abort that took a round trip is
   * followed by the next SYN at once: our NAT's entry is still open for it, and a peer SYN that finds no connector
   * meets only the listener, whose answer our NAT's conntrack drops.
   */
  retryDelayMs?: number;
  /** Hop limit of each target's first SYN (1..255): it opens the local NAT mapping without reaching the peer's. */
  ttl?: number;
  /**
   * Which incoming connections the listener takes: from a target's exact endpoint (default), or from a target's
   * address on any port (`host`: when the peer's NAT is symmetric and connects from an unpredictable port). With
   * `host`, anyone behind the peer's address can connect: pair it with `verify`.
   */
  acceptFrom?: 'endpoint' | 'host';
  /**
   * Proves that a connection is the peer (a handshake on the socket). With it, every connection from a target
   * (accepted or connected) is handed here, one call per connection, several at once; the punch resolves with the
   * first whose promise resolves (bytes the peer sent after its proof stay in the socket). A connection from a
   * target's address on another port (`acceptFrom: 'host'`) whose verify rejects is reset and the punch keeps
   * listening and retrying until `timeoutMs`, which covers verification too; one from a target's exact endpoint
   * that fails ends the punch with the verify's own error (only the peer holds that endpoint). `signal` fires when
   * the punch no longer needs that connection (another one won, abort, deadline); the socket is destroyed then.
   * At the deadline the punch rejects with `ERR_AUTH_FAILED` (`rejected`: how many failed, `cause`: the last
   * failure) when connections came and none proved itself, else `ETIMEDOUT`.
   */
  verify?: (socket: Socket, signal: AbortSignal) => Promise<void>;
  /**
   * Like `net.connect`'s option: when false (the default), the socket ends its writing side once the peer's FIN
   * arrives; set it to keep sending after the peer has finished.
   */
  allowHalfOpen?: boolean;
  signal?: AbortSignal;
}

/**
 * What {@link punchDetailed} resolves to: the connected socket (adopted by Node), how it arrived (our connect()
 * completed, or the peer's SYN reached our listener first), and the connect() calls made in all.
 */
export type PunchResult = NativeConnection;

const DEFAULT_RETRY_DELAY_MS = 5;
const MAX_TARGETS = 16;

/**
 * Punches a direct TCP connection to `remote` and resolves the connected `net.Socket`.
 * See {@link punchDetailed} for how it won.
 */
export async function punch(options: PunchOptions): Promise<Socket> {
  return (await punchDetailed(options)).socket;
}

/** Like {@link punch}, with how the connection was made. */
export async function punchDetailed(options: PunchOptions): Promise<PunchResult> {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
  const { port, localPort = 0, localAddress, timeoutMs = DEFAULT_TIMEOUT_MS } = options;
  const { retryDelayMs = DEFAULT_RETRY_DELAY_MS, ttl = 0, signal } = options;
  const remotes = Array.isArray(options.remote) ? options.remote : [options.remote];
  if (remotes.length === 0) throw invalidArgValue('options.remote', 'must hold at least one endpoint', remotes);
  remotes.forEach((r, i) => validateEndpoint(r, Array.isArray(options.remote) ? `options.remote[${i}]` : 'options.remote'));
  validateInteger(timeoutMs, 'options.timeoutMs', 1, 86_400_000);
  validateInteger(retryDelayMs, 'options.retryDelayMs', 0, 60_000);
  if (ttl !== 0) validateInteger(ttl, 'options.ttl', 1, 255);
  validateSignal(signal);
  const allowHalfOpen = options.allowHalfOpen ?? false;
  if (typeof allowHalfOpen !== 'boolean') throw invalidArgType('options.allowHalfOpen', 'a boolean', allowHalfOpen);
  const { verify } = options;
  if (verify !== undefined && typeof verify !== 'function') throw invalidArgType('options.verify', 'a function', verify);
  if (port !== undefined) {
    if (typeof port !== 'object' || port === null || typeof port.fd !== 'number') {
      throw invalidArgType('options.port', 'a ReusablePort from bindReusable()', port);
    }
    if (options.localPort !== undefined || localAddress !== undefined) {
      throw invalidArgValue('options.port', 'cannot be combined with localPort or localAddress', port);
    }
  } else {
    validatePort(localPort, 'options.localPort');
    if (localAddress !== undefined && (typeof localAddress !== 'string' || familyOf(localAddress) === 0)) {
      throw invalidArgValue('options.localAddress', 'must be a numeric IPv4 or IPv6 address', localAddress);
    }
  }
  throwIfAborted(signal);

  // Synchronous for numeric hosts: the punch then starts (and borrows `port`) before this call returns.
  const pending = resolveEndpoints(remotes);
  const resolved = Array.isArray(pending) ? pending : await pending;
  const family: Family =
    port?.family ?? (localAddress !== undefined ? (familyOf(localAddress) as Family) : familyOf(resolved[0]!.host) || 4);
  const targets = resolved.filter((r) => familyOf(r.host) === family).slice(0, MAX_TARGETS);
  if (targets.length === 0) {
    throw new TcpPunchError('ERR_NO_USABLE_ADDRESS', `no IPv${family} address among ${remotes.map(formatEndpoint).join(', ')}`);
  }
  if (port?.closed) throw new TcpPunchError('ERR_PORT_CLOSED', 'the reusable port is closed');

  const native = {
    local: port ? port.local : { host: localAddress ?? anyAddress(family), port: localPort },
    listenFd: port?.listening ? port.fd : -1,
    listen: port ? port.listening : true,
    targets,
    timeoutMs,
    retryMs: retryDelayMs,
    firstTtl: ttl,
    acceptAnyPort: options.acceptFrom === 'host',
  };
  return verify ? punchVerified(native, signal, allowHalfOpen, verify) : runNative(native, { signal, allowHalfOpen });
}
