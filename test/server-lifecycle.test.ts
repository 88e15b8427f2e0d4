import { once } from 'node:events';

import { afterEach, describe, expect, it } from 'vitest';

import { Peer } from '../lib/peer/peer.js';
import { MemoryRegistry } from '../lib/registry.js';
import { until } from './helpers/poll.js';
import { LOOSE, addr, cuttableProxy, server, settleFds, stableFdCount } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('server: lifecycle', () => {
  it('closes gracefully: goaway to peers, refuses new dials, leaves no fds behind', async () => {
    const before = await stableFdCount();
    const s = await server(LOOSE);
    const a = await Peer.connect({ server: addr(s), id: 'a', reconnect: false });
    const b = await Peer.connect({ server: addr(s), id: 'b', reconnect: false });
    b.on('connection', (sock) => sock.destroy());
    const r = await a.dial('b');
    r.socket.destroy();
    const closedA = once(a, 'close');
    await s.close();
    await closedA;
    await b.close();
    await a.close();
    expect(s.stats()).toMatchObject({ connections: 0, peers: 0, coordinations: 0 });
    expect(await settleFds(before)).toBe(before);
  });

  it('lets a dial in flight finish during close, then refuses new ones', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    const a = await Peer.connect({ server: addr(s), id: 'a', reconnect: { minDelayMs: 50, maxDelayMs: 100 } });
    // b holds the dial (its accept decision) until the server has begun closing.
    let letIn: (ok: boolean) => void = () => undefined;
    const decided = new Promise<boolean>((resolve) => (letIn = resolve));
    const b = await Peer.connect({ server: addr(s), id: 'b', reconnect: { minDelayMs: 50, maxDelayMs: 100 }, accept: () => decided });
    cleanup.push(() => a.close(), () => b.close());
    b.on('connection', (sock) => sock.destroy());
    const dialing = a.dial('b');
    expect(await until(() => s.stats().coordinations === 1)).toBe(true);
    const closing = s.close();
    await expect(Peer.connect({ server: addr(s), id: 'late' })).rejects.toMatchObject({ code: 'ERR_SERVER_CLOSING' });
    letIn(true);
    const r = await dialing;
    r.socket.destroy();
    await closing;
    expect(s.stats().totals).toMatchObject({ succeeded: 1, failed: 0 });
    // Offline now: a new dial waits for the server to come back, within its deadline.
    await until(() => !a.online);
    await expect(a.dial('b', { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
  });

  it('a dial issued while offline goes through once the peer is back', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    const proxy = await cuttableProxy(s);
    cleanup.push(() => proxy.close());
    const a = await Peer.connect({ server: proxy.address, id: 'a', reconnect: { minDelayMs: 20, maxDelayMs: 100 } });
    const b = await Peer.connect({ server: addr(s), id: 'b' });
    cleanup.push(() => a.close(), () => b.close());
    b.on('connection', (sock) => sock.destroy());
    const offline = once(a, 'offline');
    await proxy.cut();
    await offline;
    const dialing = a.dial('b', { timeoutMs: 20_000 });
    await proxy.restore();
    const r = await dialing;
    expect(r.peerId).toBe('b');
    r.socket.destroy();
  });

  it('carries relay-range control messages between the relay hook and the peer', async () => {
    const seen: string[] = [];
    const s = await server({
      relay: {
        onControlMessage(ctx, msg) {
          seen.push(`${ctx.peerId}:${msg.type}:${Buffer.from(msg.body).toString()}`);
          ctx.send({ type: 'relay-token', typeByte: 0x43, body: Buffer.from('tok') });
        },
      },
    });
    cleanup.push(() => s.close());
    const a = await Peer.connect({ server: addr(s), id: 'a' });
    cleanup.push(() => a.close());
    expect(a.server).toEqual({ host: '127.0.0.1', port: s.address().port });
    const reply = once(a, 'relay-message');
    expect(a.sendRelayMessage({ type: 'relay-token-request', typeByte: 0x42, body: Buffer.from('req') })).toBe(true);
    const [msg] = await reply;
    expect(msg).toMatchObject({ type: 'relay-token', typeByte: 0x43 });
    expect(Buffer.from(msg.body).toString()).toBe('tok');
    expect(seen).toEqual(['a:relay-token-request:req']);
  });

  it('validates options with Node-style codes', async () => {
    await expect(server({ maxAttempts: 0 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(server({ handshakeTimeoutMs: 'x' as unknown as number })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(server({ secret: '' })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  });

  it('memory registry: reservations lapse, create is insert-if-absent', async () => {
    const r = new MemoryRegistry();
    expect(await r.create('x', { token: new Uint8Array(32), expiresAt: null })).toBe(true);
    expect(await r.create('x', { token: null, expiresAt: null })).toBe(false);
    await r.update('x', { token: new Uint8Array(32), expiresAt: Date.now() - 1 });
    expect(await r.get('x')).toBeUndefined();
    expect(await r.create('x', { token: null, expiresAt: null })).toBe(true);
  });
});
