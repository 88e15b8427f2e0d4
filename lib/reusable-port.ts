/**
 * ReusablePort: a local TCP port held open with SO_REUSEADDR + SO_REUSEPORT, so that connections can be made
 * from it (an observe connection to a rendezvous server, say) and a punch can later listen and connect on it.
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { fromNative, native, requireNative } from './native.js';
import { type Endpoint, type Family, anyAddress, familyOf, validatePort } from './endpoint.js';
import { TcpPunchError, invalidArgType, invalidArgValue } from './errors.js';
import { nativeConnect, type ConnectOptions } from './native-op.js';

/** Options of {@link bindReusable}. */
export interface BindReusableOptions {
  /** Local port; 0 or absent lets the system pick one. */
  port?: number;
  /** Local numeric address; defaults to the wildcard of `family`. */
  address?: string;
  /** IP version when `address` is absent; default 4. */
  family?: Family;
  /**
   * Listen on the port at once (default true). A listener that exists before the first SYN of the peer arrives
   * turns that SYN into a queued connection instead of a RST, which some NATs answer by dropping the mapping.
   */
  listen?: boolean;
}

// Only ports bound through the addon are registered, so the addon is there when one is collected.
const finalizer = new FinalizationRegistry<number>((fd) => native?.socketClose(fd));

/** A held, reusable local port. Create it with {@link bindReusable}; close it when done. */
export class ReusablePort {
  /** The bound local address (numeric). */
  readonly address: string;
  /** The bound local port. */
  readonly port: number;
  readonly family: Family;
  /** True when the port has a listening socket. */
  readonly listening: boolean;
  #fd: number;

  /** @internal Use {@link bindReusable}. */
  constructor(fd: number, address: string, port: number, listening: boolean) {
    this.#fd = fd;
    this.address = address;
    this.port = port;
    this.family = familyOf(address) === 6 ? 6 : 4;
    this.listening = listening;
    finalizer.register(this, fd, this);
  }

  /** True once {@link close} has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** @internal The held socket, for punch(); -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** The local endpoint. */
  get local(): Endpoint {
    return { host: this.address, port: this.port };
  }

  /**
   * Connects from this port to `remote` (no retries: a refusal fails at once). The result is an ordinary
   * net.Socket whose local port is this port.
   * @throws TcpPunchError with an errno `code` (ECONNREFUSED, ETIMEDOUT...) or `ABORT_ERR`.
   */
  connect(remote: Endpoint, options: ConnectOptions = {}): Promise<Socket> {
    if (this.closed) return Promise.reject(new TcpPunchError('ERR_PORT_CLOSED', 'the reusable port is closed'));
    return nativeConnect(this.local, remote, options);
  }

  /** Releases the port. Idempotent; a punch already running on the port keeps its own duplicate until it ends. */
  close(): void {
    if (this.#fd < 0) return;
    finalizer.unregister(this);
    requireNative('ReusablePort.close()').socketClose(this.#fd);
    this.#fd = -1;
  }
}

/**
 * Binds a reusable local TCP port (SO_REUSEADDR + SO_REUSEPORT) and, by default, listens on it.
 * @throws TcpPunchError `EADDRINUSE` when a socket without the reuse options holds the port.
 */
export async function bindReusable(options: BindReusableOptions = {}): Promise<ReusablePort> {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
  const { port = 0, family = 4, listen = true } = options;
  validatePort(port, 'options.port');
  if (family !== 4 && family !== 6) throw invalidArgValue('options.family', 'must be 4 or 6', family);
  const address = options.address ?? anyAddress(family);
  if (typeof address !== 'string' || familyOf(address) === 0) {
    throw invalidArgValue('options.address', 'must be a numeric IPv4 or IPv6 address', address);
  }
  try {
    const bound = requireNative('bindReusable()').socketBind({ host: address, port }, listen);
    return new ReusablePort(bound.fd, bound.host, bound.port, listen);
  } catch (err) {
    throw fromNative(err);
  }
}

/**
 * A net.Server listening on a reusable port that sockets bound with {@link bindReusable} hold too (the port a
 * connection left from): it is handed the connections addressed to the port that no connected socket of it
 * owns. Node cannot bind a listener with SO_REUSEPORT itself (before Node 22), so the addon binds and listens and
 * the server adopts the descriptor (it owns it from then on: `close()` releases it).
 * @throws TcpPunchError with an errno `code` (EADDRINUSE when a socket without the reuse options holds the port).
 */
export async function listenReusable(local: Endpoint): Promise<Server> {
  let fd: number;
  try {
    fd = requireNative('listenReusable()').socketBind({ host: local.host, port: local.port }, true).fd;
  } catch (err) {
    throw fromNative(err);
  }
  const server = createServer();
  server.on('error', () => undefined);
  try {
    server.listen({ fd });
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  } catch (err) {
    if (!server.listening) native?.socketClose(fd);
    throw err;
  }
  return server;
}
