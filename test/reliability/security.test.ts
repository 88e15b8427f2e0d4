/**
 * The claims of docs/SECURITY.md that need a live system: end-to-end TLS with the server-assigned roles over both
 * paths (direct and relayed), and what an on-path observer of the (unencrypted) control connection can do with a
 * relay token it sniffs — take the slot and be paired with the other peer — and that TLS is what tells the victim.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import type { ConnectionInfo } from '../../lib/peer/types.js';
import { FrameDecoder } from '../../lib/protocol/frame.js';
import { decodeRelay } from '../../lib/relay/frames.js';
import { joinRelay } from '../../lib/relay/relay-client.js';
import { startServer } from '../../lib/server/server.js';
import { secureSocket } from '../../lib/tls.js';
import type { UpgradableStream } from '../../lib/upgrade.js';
import { exchange } from './harness/exchange.mjs';
import { record } from './summary.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const alice = { key: fixture('alice.key.pem'), cert: fixture('alice.cert.pem') };
const bob = { key: fixture('bob.key.pem'), cert: fixture('bob.cert.pem') };

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await Promise.resolve(fn()).catch(() => undefined);
});

const results: Record<string, unknown> = {};

describe('security: end-to-end TLS with the server-assigned roles', () => {
  it.each(['direct', 'relay'] as const)('secures a %s connection made with Peer.dial, hash-checked both ways', async (strategy) => {
    const s = await startServer({ host: '127.0.0.1', secret: 'tls-example-secret' });
    cleanup.push(() => s.close());
    const server = `127.0.0.1:${s.address().port}`;
    // The example of docs/SECURITY.md, as written there.
    const a = await Peer.connect({ server, id: 'alice', secret: 'tls-example-secret', localAddress: '127.0.0.2' });
    const b = await Peer.connect({ server, id: 'bob', secret: 'tls-example-secret', localAddress: '127.0.0.3' });
    cleanup.push(() => a.close(), () => b.close());
    const accepted = new Promise<Awaited<ReturnType<typeof exchange>>>((resolve, reject) => {
      b.on('connection', (socket, info) => {
        secureSocket(socket, { role: info.role, peerName: info.peerId, ...bob, ca: alice.cert })
          .then((tls) => exchange(tls, 1 << 20))
          .then(resolve, reject);
      });
    });
    const { socket, role, peerId, path } = await a.dial('bob', { strategy });
    const tls = await secureSocket(socket, { role, peerName: peerId, ...alice, ca: bob.cert });
    expect(tls.getProtocol()).toBe('TLSv1.3');
    const [x, y] = await Promise.all([exchange(tls, 1 << 20), accepted]);
    results[`tls-${strategy}`] = { path, role, dialer: x.ok, acceptor: y.ok, bytes: x.received + y.received };
    expect(path).toBe(strategy);
    expect(x.ok && y.ok).toBe(true);
  });
});

/**
 * A TCP proxy for one peer's control connection, standing for an attacker on the path: it forwards everything,
 * parses what the server sends, and when a relay grant goes by it joins the relay with that token itself and holds
 * the grant back for `delayMs` before passing it on.
 */
async function onPathTap(serverPort: number, delayMs: number, onToken: (token: string) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((c) => {
    const up = connect({ host: '127.0.0.1', port: serverPort });
    for (const x of [c, up]) x.on('error', () => undefined);
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
    c.pipe(up);
    const dec = new FrameDecoder({ maxFrameSize: 65_535 });
    up.on('data', (d: Buffer) => {
      dec.write(d);
      let delay = 0;
      for (let f = dec.read(); f; f = dec.read()) {
        if (f.type === 0x43) {
          const grant = decodeRelay(f);
          if (grant.name === 'relay-token') onToken(grant.token);
          delay = delayMs;
        }
      }
      // Frames are forwarded whole and in order (this toy tap assumes one read holds whole frames, as on loopback).
      setTimeout(() => c.write(d), delay);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

describe('security: an on-path observer of the control connection', () => {
  it('can take a relayed session with a sniffed token; the victim is paired with it, and only TLS tells', async () => {
    const s = await startServer({ host: '127.0.0.1', secret: 'on-path-secret' });
    cleanup.push(() => s.close());
    let stolen: Socket | undefined;
    const thefts: Promise<void>[] = [];
    const tap = await onPathTap(s.address().port, 50, (token) => {
      thefts.push(
        joinRelay({ server: { host: '127.0.0.1', port: s.address().port }, token }).then(
          (c) => void (stolen = c.socket.on('error', () => undefined)),
          () => undefined,
        ),
      );
    });
    cleanup.push(() => new Promise((r) => tap.server.close(r)));
    // Alice's control connection goes through the tap; Bob's does not.
    const a = await Peer.connect({ server: `127.0.0.1:${tap.port}`, id: 'alice', secret: 'on-path-secret', localAddress: '127.0.0.2' });
    const b = await Peer.connect({ server: `127.0.0.1:${s.address().port}`, id: 'bob', secret: 'on-path-secret', localAddress: '127.0.0.3' });
    cleanup.push(() => a.close(), () => b.close());
    const atBob = new Promise<{ socket: Socket | UpgradableStream; info: ConnectionInfo }>((resolve) => b.on('connection', (socket, info) => resolve({ socket, info })));
    const aliceDial = await a.dial('bob', { strategy: 'relay', timeoutMs: 8000 }).then(
      () => 'connected',
      (err: { code: string }) => err.code,
    );
    await Promise.all(thefts);
    const { socket, info } = await atBob;
    // Bob believes it is talking to Alice, through the relay...
    expect(info).toMatchObject({ peerId: 'alice', path: 'relay' });
    expect(stolen).toBeDefined();
    // ...and it is the attacker's socket that reaches it: bytes written by the attacker arrive at Bob.
    socket.on('error', () => undefined);
    stolen!.write('hello from the attacker');
    const [first] = (await once(socket, 'data')) as [Buffer];
    expect(first.toString()).toBe('hello from the attacker');
    results.onPathTokenTheft = { aliceDial, bobSees: { peerId: info.peerId, path: info.path }, attackerReachedBob: true };
    expect(aliceDial).not.toBe('connected');
    record('security', 'security', results);
  });

  it('is refused by TLS: with secureSocket, the victim rejects the party holding the stolen slot', async () => {
    const s = await startServer({ host: '127.0.0.1', secret: 'on-path-secret' });
    cleanup.push(() => s.close());
    let stolen: Socket | undefined;
    const thefts: Promise<void>[] = [];
    const tap = await onPathTap(s.address().port, 50, (token) => {
      thefts.push(
        joinRelay({ server: { host: '127.0.0.1', port: s.address().port }, token }).then(
          (c) => void (stolen = c.socket.on('error', () => undefined)),
          () => undefined,
        ),
      );
    });
    cleanup.push(() => new Promise((r) => tap.server.close(r)));
    const a = await Peer.connect({ server: `127.0.0.1:${tap.port}`, id: 'alice', secret: 'on-path-secret', localAddress: '127.0.0.2' });
    const b = await Peer.connect({ server: `127.0.0.1:${s.address().port}`, id: 'bob', secret: 'on-path-secret', localAddress: '127.0.0.3' });
    cleanup.push(() => a.close(), () => b.close());
    const bobVerdict = new Promise<string>((resolve) => {
      b.on('connection', (socket, info) => {
        socket.on('error', () => undefined);
        secureSocket(socket, { role: info.role, peerName: info.peerId, ...bob, ca: alice.cert, timeoutMs: 5000 }).then(
          () => resolve('accepted'),
          (err: { code: string }) => resolve(err.code),
        );
      });
    });
    const dialing = a.dial('bob', { strategy: 'relay', timeoutMs: 8000 }).catch(() => undefined);
    for (let i = 0; i < 400 && thefts.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await Promise.all(thefts);
    expect(stolen).toBeDefined();
    // The attacker has no key of Alice's: the best it can do is present a certificate of its own (here Bob's).
    const attackerTls = secureSocket(stolen!, { role: 'initiator', peerName: 'bob', ...bob, ca: bob.cert, timeoutMs: 5000 }).catch((err: { code: string }) => err.code);
    const verdict = await bobVerdict;
    await attackerTls;
    await dialing;
    results.onPathTokenTheftWithTls = { bobVerdict: verdict };
    record('security', 'security', results);
    expect(verdict).not.toBe('accepted');
    expect(['ERR_TLS_PEER_UNVERIFIED', 'ERR_TLS_PEER_NAME', 'ECONNRESET']).toContain(verdict);
  });
});
