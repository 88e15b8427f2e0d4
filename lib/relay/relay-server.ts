/**
 * A relay on a port of its own (a separate relay process, or tests): every connection must start with a
 * `relay-join` frame within `handshakeTimeoutMs`, and is then handed to the {@link RelayService}. The usual
 * deployment instead shares the rendezvous server's port, whose `relay.onRelayJoin` hook calls
 * `RelayService.handleJoin` directly.
 *
 * With the native pump and an addon that can hold connections, the addon accepts them (native-legs.ts) and no
 * net.Socket is ever made for a join; otherwise a net.Server accepts them.
 */
import { once } from 'node:events';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { createServer, type AddressInfo, type Server } from 'node:net';

import { validateInteger, validatePort } from '../endpoint.js';
import { TcpPunchError, invalidArgValue } from '../errors.js';
import { enableFastOpen } from '../fast-open.js';
import { requireNative } from '../native.js';
import { listenNativeJoins, nativeJoinsAvailable, type NativeJoinListener } from './native-legs.js';
import { nativePump } from './pump.js';
import type { RelayService } from './relay-service.js';

/** Options of {@link listenRelay}. */
export interface ListenRelayOptions {
  /** Address to listen on; default all addresses (IPv6 and IPv4 where the host has IPv6). */
  host?: string;
  /** Port; default 0 (the system picks one). */
  port?: number;
  /** Time a connection has to send its join frame; default 5000 ms. */
  handshakeTimeoutMs?: number;
  /**
   * Who accepts the connections: `native` (the addon holds each join until the native pump takes it), `node` (a
   * net.Server), or `auto` (default): `native` when the relay's pump is the native one and the addon can.
   */
  accept?: 'auto' | 'native' | 'node';
}

/** A listening standalone relay. */
export interface RelayListener {
  /** The net.Server accepting the joins; undefined when the addon accepts them (`accept` is `native`). */
  readonly server: Server | undefined;
  /** Who accepts the connections. */
  readonly accept: 'native' | 'node';
  /** The bound address. */
  address(): { host: string; port: number };
  /** Stops listening and closes the relay service (ending its sessions). */
  close(): Promise<void>;
}

/**
 * Listens for relay joins on a port of their own.
 * @throws TcpPunchError `ERR_NATIVE_UNAVAILABLE` for `accept: 'native'` without an addon that can; the errno's
 *   code (`EADDRINUSE`...) when the port cannot be had.
 */
export async function listenRelay(relay: RelayService, options: ListenRelayOptions = {}): Promise<RelayListener> {
  const { host, port = 0, handshakeTimeoutMs = 5000, accept = 'auto' } = options;
  validatePort(port, 'options.port');
  validateInteger(handshakeTimeoutMs, 'options.handshakeTimeoutMs', 1, 2 ** 31 - 1);
  if (accept !== 'auto' && accept !== 'native' && accept !== 'node')
    throw invalidArgValue('options.accept', "must be 'auto', 'native' or 'node'", accept);
  if (accept === 'native') {
    requireNative('listenRelay({ accept: "native" })');
    if (!nativeJoinsAvailable) throw new TcpPunchError('ERR_NATIVE_UNAVAILABLE', 'this build of the addon cannot accept relay joins');
  }
  if (accept === 'native' || (accept === 'auto' && nativeJoinsAvailable && relay.pump === nativePump))
    return listenNative(relay, await numericHost(host), port, handshakeTimeoutMs);

  const server = createServer({ noDelay: true }, (socket) => relay.accept(socket, { timeoutMs: handshakeTimeoutMs }));
  server.listen(port, host);
  await once(server, 'listening');
  enableFastOpen(server); // joins may ride in their SYN (see fast-open.ts)
  return {
    server,
    accept: 'node',
    address() {
      const a = server.address() as AddressInfo;
      return { host: a.address, port: a.port };
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await relay.close();
      await closed;
    },
  };
}

/** The addresses to try, in order: a name is resolved as net.Server would, no host means all addresses. */
async function numericHost(host: string | undefined): Promise<string[]> {
  if (host === undefined) return ['::', '0.0.0.0'];
  if (isIP(host)) return [host];
  return [(await lookup(host)).address];
}

function listenNative(relay: RelayService, hosts: string[], port: number, handshakeTimeoutMs: number): RelayListener {
  let listener: NativeJoinListener | undefined;
  for (const [i, host] of hosts.entries()) {
    try {
      listener = listenNativeJoins({ host, port }, handshakeTimeoutMs, (leg, r) => relay.handleFirst(leg, r));
      break;
    } catch (err) {
      // A host without IPv6 cannot take `::`; the IPv4 any-address then serves, as it does for net.Server.
      const code = (err as TcpPunchError).code;
      if (i === hosts.length - 1 || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw err;
    }
  }
  const l = listener!;
  enableFastOpen(l.fd);
  let closing: Promise<void> | undefined;
  return {
    server: undefined,
    accept: 'native',
    address: () => ({ host: l.host, port: l.port }),
    close() {
      closing ??= (l.close(), relay.close());
      return closing;
    },
  };
}
