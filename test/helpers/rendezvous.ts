/** Shared helpers of the rendezvous tests: servers, peers, raw clients and fd accounting (loopback only). */
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { encodeMessage } from '../../lib/protocol/messages.js';
import type { Message } from '../../lib/protocol/messages.js';
import { readMessage } from '../../lib/protocol/stream.js';
import { until } from './poll.js';
import { Peer } from '../../lib/peer/peer.js';
import type { PeerOptions } from '../../lib/peer/types.js';
import { startServer } from '../../lib/server/server.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import type { ServerOptions } from '../../lib/server/options.js';

/** Limits loose enough for many dials from one loopback address. */
export const LOOSE: ServerOptions = {
  maxConnectionsPerIp: 5000,
  connectionRatePerIp: 100_000,
  connectionBurstPerIp: 100_000,
  frameRate: 100_000,
  frameBurst: 100_000,
  maxPendingPerPeer: 1000,
};

export async function server(options: ServerOptions = {}): Promise<RendezvousServer> {
  return startServer({ host: '127.0.0.1', ...options });
}

export function addr(s: RendezvousServer): string {
  return `127.0.0.1:${s.address().port}`;
}

export async function peer(s: RendezvousServer, id: string, options: Partial<PeerOptions> = {}): Promise<Peer> {
  return Peer.connect({ server: addr(s), id, ...options });
}

/** Number of open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** The fd count once it has not changed for 300 ms (bounded wait): a baseline unaffected by earlier closes. */
export async function stableFdCount(maxWaitMs = 5000): Promise<number> {
  const end = Date.now() + maxWaitMs;
  let last = fdCount();
  let since = Date.now();
  while (Date.now() < end && Date.now() - since < 300) {
    await sleep(30);
    const n = fdCount();
    if (n !== last) {
      last = n;
      since = Date.now();
    }
  }
  return last;
}

/** Waits (bounded) until the fd count drops to `target` or below; returns the last count. */
export async function settleFds(target: number, maxWaitMs = 8000): Promise<number> {
  await until(() => fdCount() <= target, maxWaitMs, 50);
  return fdCount();
}

/** A raw TCP client to the server. */
export async function raw(s: RendezvousServer, localAddress?: string): Promise<Socket> {
  const sock = connect({ host: '127.0.0.1', port: s.address().port, ...(localAddress ? { localAddress } : {}) });
  sock.on('error', () => undefined);
  await once(sock, 'connect');
  return sock;
}

/** Sends messages (or raw bytes) on a raw socket. */
export function send(sock: Socket, ...msgs: (Message | Buffer)[]): void {
  for (const m of msgs) sock.write(Buffer.isBuffer(m) ? m : encodeMessage(m));
}

/** Reads the next message, or undefined if the socket closes or nothing comes within `timeoutMs`. */
export async function next(sock: Socket, timeoutMs = 5000): Promise<Message | undefined> {
  try {
    return await readMessage(sock, { timeoutMs, maxFrameSize: 65535 });
  } catch {
    return undefined;
  }
}

/** Resolves once the socket has closed (bounded); true if it did. */
export async function closed(sock: Socket, maxWaitMs = 10_000): Promise<boolean> {
  if (sock.destroyed) return true;
  sock.resume();
  const t = sleep(maxWaitMs).then(() => false);
  return Promise.race([once(sock, 'close').then(() => true), t]);
}

/** Exchanges a line both ways over a dialled pair and checks it arrives intact. */
export async function echoCheck(a: Duplex, b: Duplex, payload: string): Promise<[string, string]> {
  const readAll = (s: Duplex, n: number): Promise<string> =>
    new Promise((resolve, reject) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString('utf8');
        if (got.length >= n) {
          s.removeListener('data', onData);
          resolve(got);
        }
      };
      s.on('data', onData);
      s.once('error', reject);
    });
  const pa = readAll(b, payload.length + 2);
  const pb = readAll(a, payload.length + 2);
  a.write(`a:${payload}`);
  b.write(`b:${payload}`);
  return Promise.all([pa, pb]);
}

/**
 * Registers `id` on an open server over a raw socket (no token: first registration) and returns the socket,
 * which then answers nothing: a peer that never follows the server's instructions.
 */
export async function rawPeer(s: RendezvousServer, id: string, localAddress?: string): Promise<Socket> {
  const sock = await raw(s, localAddress);
  send(sock, { type: 'hello', id, nonce: new Uint8Array(16), software: 'test', private: [], warm: false });
  const challenge = await next(sock);
  if (challenge?.type !== 'challenge') throw new Error(`expected challenge, got ${challenge?.type}`);
  send(sock, { type: 'auth', proof: new Uint8Array(0) });
  const welcome = await next(sock);
  if (welcome?.type !== 'welcome') throw new Error(`expected welcome, got ${welcome?.type}`);
  sock.resume();
  return sock;
}

/** A TCP forwarder to the server whose connections can be cut and restored: one peer loses the server alone. */
export async function cuttableProxy(s: RendezvousServer): Promise<{ address: string; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const { createServer } = await import('node:net');
  const live = new Set<Socket>();
  let port = 0;
  const make = () =>
    createServer((c) => {
      const up = connect({ host: '127.0.0.1', port: s.address().port });
      for (const x of [c, up]) {
        live.add(x);
        x.on('error', () => undefined);
        x.on('close', () => {
          live.delete(x);
          c.destroy();
          up.destroy();
        });
      }
      c.pipe(up);
      up.pipe(c);
    });
  let srv = make();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  port = (srv.address() as { port: number }).port;
  const stop = async (): Promise<void> => {
    const closedP = new Promise<void>((resolve) => srv.close(() => resolve()));
    for (const x of live) x.destroy();
    await closedP;
  };
  return {
    address: `127.0.0.1:${port}`,
    cut: stop,
    async restore() {
      srv = make();
      srv.listen(port, '127.0.0.1');
      await once(srv, 'listening');
    },
    close: stop,
  };
}
