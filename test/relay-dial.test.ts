/**
 * Dial strategies through the server's built-in relay, on loopback: forced relay with 100 MB each way and
 * half-close, relay-first upgrade while data flows both ways, limits reported to both sides, no fd leak.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionInfo, RelayEndInfo } from '../lib/peer/types.js';
import type { ServerOptions } from '../lib/server/options.js';
import { UpgradableStream } from '../lib/upgrade.js';
import { drainHash } from './helpers/net.js';
import { until } from './helpers/poll.js';
import { LOOSE, peer, server, stableFdCount, settleFds } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function pair(options: ServerOptions = {}) {
  const s = await server({ ...LOOSE, ...options });
  cleanup.push(() => s.close());
  const a = await peer(s, 'alice');
  const b = await peer(s, 'bob');
  cleanup.push(() => a.close(), () => b.close());
  const accepted: { socket: Socket | UpgradableStream; info: ConnectionInfo }[] = [];
  b.on('connection', (socket, info) => {
    socket.on('error', () => {});
    accepted.push({ socket, info });
  });
  return { s, a, b, accepted };
}

/** Streams `total` random bytes (in chunks, with backpressure) and ends; resolves the SHA-256. */
async function pump(stream: Duplex, total: number, onProgress?: (sent: number) => void): Promise<string> {
  const h = createHash('sha256');
  const block = randomBytes(256 * 1024);
  let sent = 0;
  let i = 0;
  while (sent < total) {
    // Vary the bytes cheaply: each chunk is the block rotated, so reordering or loss changes the hash.
    const n = Math.min(block.length, total - sent);
    const chunk = Buffer.concat([block.subarray(i % n), block.subarray(0, i % n)]).subarray(0, n);
    i += 7919;
    h.update(chunk);
    sent += n;
    if (!stream.write(chunk)) await once(stream, 'drain');
    onProgress?.(sent);
  }
  stream.end();
  return h.digest('hex');
}

describe('relay dials', () => {
  it('carries 100 MB each way through the relay with both sides on path relay', async () => {
    // The default byte limit (128 MiB per session, both ways together) would end this session: raise it.
    const { a, accepted } = await pair({ relay: { limits: { maxBytesPerSession: 1024 ** 3 } } });
    const r = await a.dial('bob', { strategy: 'relay' });
    expect(r).toMatchObject({ path: 'relay', mode: 'relay', role: 'initiator', peerId: 'bob' });
    await until(() => accepted.length === 1);
    const { socket: other, info } = accepted[0]!;
    expect(info).toMatchObject({ path: 'relay', role: 'responder', peerId: 'alice' });
    const total = 100 * 1024 * 1024;
    const [gotB, gotA, sentA, sentB] = await Promise.all([drainHash(other), drainHash(r.socket), pump(r.socket, total), pump(other, total)]);
    expect(gotB).toEqual({ hash: sentA, bytes: total });
    expect(gotA).toEqual({ hash: sentB, bytes: total });
    const end = await r.relayEnd;
    expect(end).toMatchObject({ reason: 'eof', code: '', bytesSent: total, bytesReceived: total });
  });

  it('propagates a half-close: one side ends, the other still sends and is heard', async () => {
    const { a, accepted } = await pair();
    const r = await a.dial('bob', { strategy: 'relay' });
    await until(() => accepted.length === 1);
    const other = accepted[0]!.socket;
    const gotAtB = drainHash(other);
    r.socket.end('alice is done');
    expect(await gotAtB).toMatchObject({ bytes: 'alice is done'.length });
    const gotAtA = drainHash(r.socket);
    other.end('bob still talks');
    expect(await gotAtA).toMatchObject({ bytes: 'bob still talks'.length });
  });

  it('joins the relay from the localAddress of the peer', async () => {
    const s = await server({ ...LOOSE });
    cleanup.push(() => s.close());
    // Linux answers on all of 127/8: a second loopback address shows which one the relay connection used.
    const a = await peer(s, 'alice', { localAddress: '127.0.0.2' });
    const b = await peer(s, 'bob');
    cleanup.push(() => a.close(), () => b.close());
    b.on('connection', (socket) => socket.on('error', () => {}));
    const r = await a.dial('bob', { strategy: 'relay' });
    expect(r.path).toBe('relay');
    expect((r.socket as Socket).localAddress).toBe('127.0.0.2');
    (r.socket as Socket).destroy();
  });

  it('takes the direct path with direct-first (the default) where punching works', async () => {
    // The fallback itself needs a NAT that defeats punching: the NAT lab's symmetric pairs cover it.
    const { a, accepted } = await pair();
    const r = await a.dial('bob');
    expect(r.path).toBe('direct');
    await until(() => accepted.length === 1);
    expect(accepted[0]!.info.path).toBe('direct');
    // Half-close behaves as on the relay path: after alice's end, bob still answers and alice still hears it.
    const other = accepted[0]!.socket;
    const atBob = drainHash(other);
    r.socket.end('bye');
    expect((await atBob).bytes).toBe(3);
    const atAlice = drainHash(r.socket);
    other.end('still here');
    expect((await atAlice).bytes).toBe('still here'.length);
    r.socket.destroy();
    other.destroy();
  });

  it('moves a relay-first stream to the direct path while data flows both ways, every byte intact', async () => {
    const { a, b, accepted } = await pair();
    const upgrades: string[] = [];
    a.on('upgrade', (e) => upgrades.push(`a:${e.role}`));
    b.on('upgrade', (e) => upgrades.push(`b:${e.role}`));
    const r = await a.dial('bob', { strategy: 'relay-first' });
    expect(r.path).toBe('relay');
    expect(r.socket).toBeInstanceOf(UpgradableStream);
    await until(() => accepted.length === 1);
    const other = accepted[0]!.socket as UpgradableStream;
    expect(other).toBeInstanceOf(UpgradableStream);
    const total = 64 * 1024 * 1024;
    const [gotB, gotA, sentA, sentB] = await Promise.all([drainHash(other), drainHash(r.socket), pump(r.socket, total), pump(other, total)]);
    expect(gotB).toEqual({ hash: sentA, bytes: total });
    expect(gotA).toEqual({ hash: sentB, bytes: total });
    await until(() => upgrades.length === 2, 20_000);
    expect(upgrades.sort()).toEqual(['a:initiator', 'b:responder']);
    expect((r.socket as UpgradableStream).path).toBe('direct');
    expect(other.path).toBe('direct');
    // Part of the stream went through the relay, the rest directly.
    expect((r.socket as UpgradableStream).bytesWrittenToRelay).toBeLessThan(total);
  });

  it('ends a session at its byte limit and tells both sides why', async () => {
    const { a, b, accepted } = await pair({ relay: { limits: { maxBytesPerSession: 1024 * 1024 } } });
    const ends: RelayEndInfo[] = [];
    b.on('relay-end', (e) => ends.push(e));
    const r = await a.dial('bob', { strategy: 'relay' });
    await until(() => accepted.length === 1);
    const other = accepted[0]!.socket;
    other.resume();
    r.socket.on('error', () => {});
    void pump(r.socket, 8 * 1024 * 1024).catch(() => {});
    expect(await r.relayEnd).toMatchObject({ reason: 'limit-bytes', code: 'ERR_RELAY_LIMIT_BYTES' });
    await until(() => ends.length === 1);
    expect(ends[0]).toMatchObject({ reason: 'limit-bytes', code: 'ERR_RELAY_LIMIT_BYTES' });
    expect(await accepted[0]!.info.relayEnd).toMatchObject({ reason: 'limit-bytes' });
  });

  it('ends a session at its duration limit and tells both sides why', async () => {
    const { a, accepted } = await pair({ relay: { limits: { maxDurationMs: 300 } } });
    const r = await a.dial('bob', { strategy: 'relay' });
    await until(() => accepted.length === 1);
    r.socket.on('error', () => {});
    expect(await r.relayEnd).toMatchObject({ reason: 'limit-duration', code: 'ERR_RELAY_LIMIT_DURATION' });
    expect(await accepted[0]!.info.relayEnd).toMatchObject({ reason: 'limit-duration' });
  });

  it('refuses relayed dials on a server without a relay', async () => {
    const { a } = await pair({ relay: false });
    await expect(a.dial('bob', { strategy: 'relay' })).rejects.toMatchObject({ code: 'ERR_PATH_UNSUPPORTED' });
  });

  it('leaks no fd over 300 relayed sessions (100 at a time)', async () => {
    const { a, accepted } = await pair({ relay: { limits: { maxSessionsPerPeer: 200, maxSessionsPerIp: 400 } } });
    const before = await stableFdCount();
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(Array.from({ length: 100 }, () => a.dial('bob', { strategy: 'relay' })));
      await until(() => accepted.length === 100);
      for (const r of results) r.socket.on('error', () => {});
      await Promise.all(
        results.map(async (r, i) => {
          const other = accepted[i]!.socket;
          const got = drainHash(other);
          r.socket.end(`m${i}`);
          r.socket.resume();
          await got;
          other.end();
        }),
      );
      await Promise.all(results.map((r) => r.relayEnd));
      for (const { socket } of accepted.splice(0)) socket.destroy();
      for (const r of results) r.socket.destroy();
    }
    expect(await settleFds(before)).toBe(before);
  });
});
