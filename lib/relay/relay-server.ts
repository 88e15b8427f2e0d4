/**
 * A relay on a port of its own (a separate relay process, or tests): every connection must start with a
 * `relay-join` frame within `handshakeTimeoutMs`, and is then handed to the {@link RelayService}. The usual
 * deployment instead shares the rendezvous server's port, whose `relay.onRelayJoin` hook calls
 * `RelayService.handleJoin` directly.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';

import { validateInteger, validatePort } from '../endpoint.js';
import { enableFastOpen } from '../fast-open.js';
import type { RelayService } from './relay-service.js';

/** Options of {@link listenRelay}. */
export interface ListenRelayOptions {
  /** Address to listen on; default all addresses. */
  host?: string;
  /** Port; default 0 (the system picks one). */
  port?: number;
  /** Time a connection has to send its join frame; default 5000 ms. */
  handshakeTimeoutMs?: number;
}

/** A listening standalone relay. */
export interface RelayListener {
  readonly server: Server;
  /** The bound address. */
  address(): { host: string; port: number };
  /** Stops listening and closes the relay service (ending its sessions). */
  close(): Promise<void>;
}

/** Listens for relay joins on a port of their own. */
export async function listenRelay(relay: RelayService, options: ListenRelayOptions = {}): Promise<RelayListener> {
  const { host, port = 0, handshakeTimeoutMs = 5000 } = options;
  validatePort(port, 'options.port');
  validateInteger(handshakeTimeoutMs, 'options.handshakeTimeoutMs', 1, 2 ** 31 - 1);
  const server = createServer({ noDelay: true }, (socket) => relay.accept(socket, { timeoutMs: handshakeTimeoutMs }));
  server.listen(port, host);
  await once(server, 'listening');
  enableFastOpen(server); // joins may ride in their SYN (see fast-open.ts)
  return {
    server,
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
