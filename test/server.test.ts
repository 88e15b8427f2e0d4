import { once } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

import { clientProof, deriveIdKey } from '../lib/protocol/crypto.js';
import { FrameDecoder, HEADER_SIZE, PROTOCOL_VERSION, encodeFrame, encodeFrameAs } from '../lib/protocol/frame.js';
import { decodeMessage, encodeBody } from '../lib/protocol/messages.js';
import { Peer } from '../lib/peer/peer.js';
import type { RendezvousServer } from '../lib/server/server.js';
import type { ServerOptions } from '../lib/server/options.js';
import { until } from './helpers/poll.js';
import { LOOSE, addr, closed, stableFdCount, next, raw, rawPeer, send, server, settleFds } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A server plus two well-behaved peers on 127.0.0.2, a different source IP than the attackers on 127.0.0.1. */
async function arena(options: ServerOptions = {}, secret?: string): Promise<{ s: RendezvousServer; a: Peer; b: Peer; check: () => Promise<void> }> {
  const s = await server({ ...options, ...(secret ? { secret } : {}) });
  cleanup.push(() => s.close());
  const mk = async (id: string): Promise<Peer> => {
    const p = await Peer.connect({ server: addr(s), id, localAddress: '127.0.0.2', ...(secret ? { secret } : {}) });
    cleanup.push(() => p.close());
    p.on('connection', (sock) => sock.destroy());
    return p;
  };
  const a = await mk('good-a');
  const b = await mk('good-b');
  /** The well-behaved pair still connects. */
  const check = async (): Promise<void> => {
    const r = await a.dial('good-b', { timeoutMs: 10_000 });
    r.socket.destroy();
  };
  return { s, a, b, check };
}

/** Sends bytes and returns the error code the server answers with (undefined if it just closes). */
async function codeFor(s: RendezvousServer, bytes: Buffer, from?: string): Promise<string | undefined> {
  const sock = await raw(s, from);
  sock.write(bytes);
  const reply = await next(sock);
  await closed(sock);
  return reply?.type === 'error' ? reply.code : undefined;
}

const hello = (id: string) => ({ type: 'hello' as const, id, nonce: new Uint8Array(16).fill(1), software: 't', private: [], warm: false });

describe('server: hostile input', () => {
  it('answers random bytes with a coded error and closes, while a good peer keeps working', async () => {
    const { s, check } = await arena({ ...LOOSE, handshakeTimeoutMs: 300 });
    const codes = new Set<string | undefined>();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 600 }), async (bytes) => {
        codes.add(await codeFor(s, Buffer.from(bytes)));
      }),
      { numRuns: 40 },
    );
    await check();
    for (const c of codes) {
      expect(['ERR_BAD_MAGIC', 'ERR_UNSUPPORTED_VERSION', 'ERR_FRAME_TOO_LARGE', 'ERR_UNKNOWN_TYPE', 'ERR_MALFORMED_FRAME',
        'ERR_UNEXPECTED_MESSAGE', 'ERR_HANDSHAKE_TIMEOUT', 'ERR_INVALID_TOKEN', 'ERR_RELAY_TOKEN_INVALID', 'ERR_RELAY_PROTOCOL']).toContain(c);
    }
    expect(s.stats().peers).toBe(2);
  });

  it('rejects oversized, wrong-version, truncated and out-of-place frames with their codes', async () => {
    const { s, check } = await arena({ handshakeTimeoutMs: 300 });
    expect(await codeFor(s, Buffer.from([0x54, 0x50, PROTOCOL_VERSION, 0x01, 0xff, 0xff]))).toBe('ERR_FRAME_TOO_LARGE');
    expect(await codeFor(s, Buffer.from([0x54, 0x50, PROTOCOL_VERSION + 1, 0x01, 0, 0]))).toBe('ERR_UNSUPPORTED_VERSION');
    expect(await codeFor(s, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe('ERR_BAD_MAGIC');
    expect(await codeFor(s, encodeFrame(0x01, Buffer.from([0, 5, 0x61])))).toBe('ERR_MALFORMED_FRAME');
    expect(await codeFor(s, encodeFrame(0x7f, Buffer.alloc(0)))).toBe('ERR_UNKNOWN_TYPE');
    // A frame cut short just stalls until the handshake deadline.
    expect(await codeFor(s, encodeFrame(0x05, Buffer.alloc(4)).subarray(0, 7))).toBe('ERR_HANDSHAKE_TIMEOUT');
    const ping = encodeFrame(0x05, Buffer.alloc(8));
    expect(await codeFor(s, ping)).toBe('ERR_UNEXPECTED_MESSAGE');
    const observe = { type: 'observe' as const, coordId: new Uint8Array(16), attempt: 1, token: new Uint8Array(16), private: [], mapping: 'unknown' as const, filtering: 'unknown' as const };
    const sock = await raw(s);
    send(sock, observe);
    expect(await next(sock)).toMatchObject({ type: 'error', code: 'ERR_INVALID_TOKEN' });
    // The built-in relay refuses a join whose body is not a token.
    const relay = await raw(s);
    send(relay, { type: 'relay-join', typeByte: 0x40, body: new Uint8Array(8) });
    expect(await next(relay)).toMatchObject({ type: 'error', code: 'ERR_MALFORMED_FRAME' });
    // Messages out of order inside a control handshake.
    const ctl = await raw(s);
    send(ctl, hello('early'), { type: 'ping', seq: 1, rttUs: 0 });
    let m = await next(ctl);
    if (m?.type === 'challenge') m = await next(ctl);
    expect(m).toMatchObject({ type: 'error', code: 'ERR_UNEXPECTED_MESSAGE' });
    await check();
    expect(s.stats().errors['ERR_BAD_MAGIC']).toBe(1);
  });

  it('rejects forged and replayed auth on a secret server', async () => {
    const { s, check } = await arena({}, 's3cret');
    const key = deriveIdKey('s3cret', 'mallory');
    // A genuine registration, recorded.
    const c1 = await raw(s);
    send(c1, hello('mallory'));
    const ch1 = await next(c1);
    if (ch1?.type !== 'challenge') throw new Error('no challenge');
    expect(ch1.auth).toBe('secret');
    const proof = clientProof(key, ch1.nonce, new Uint8Array(16).fill(1), 'mallory');
    send(c1, { type: 'auth', proof });
    expect(await next(c1)).toMatchObject({ type: 'welcome' });
    // Replaying the same hello + auth on a new connection: the server nonce differs, so the proof is stale.
    const c2 = await raw(s);
    send(c2, hello('mallory'));
    expect(await next(c2)).toMatchObject({ type: 'challenge' });
    send(c2, { type: 'auth', proof });
    expect(await next(c2)).toMatchObject({ type: 'error', code: 'ERR_AUTH_FAILED' });
    // Forged: random and empty proofs.
    for (const forged of [new Uint8Array(32).fill(7), new Uint8Array(0)]) {
      const c = await raw(s);
      send(c, hello('good-a'));
      expect(await next(c)).toMatchObject({ type: 'challenge' });
      send(c, { type: 'auth', proof: forged });
      expect(await next(c)).toMatchObject({ type: 'error', code: 'ERR_AUTH_FAILED' });
    }
    c1.destroy();
    await check();
  });

  it('keeps an id with its first registrant on an open server; only the token holder can take it over', async () => {
    const { s, a, check } = await arena();
    // No token: the id is taken.
    const c = await raw(s);
    send(c, hello('good-a'));
    expect(await next(c)).toMatchObject({ type: 'challenge', auth: 'token' });
    send(c, { type: 'auth', proof: new Uint8Array(0) });
    expect(await next(c)).toMatchObject({ type: 'error', code: 'ERR_ID_TAKEN' });
    // A guessed token.
    const g = await raw(s);
    send(g, hello('good-a'));
    await next(g);
    send(g, { type: 'auth', proof: new Uint8Array(32).fill(9) });
    expect(await next(g)).toMatchObject({ type: 'error', code: 'ERR_AUTH_FAILED' });
    await check();
    expect(a.online).toBe(true);
    // The legitimate holder (same token, e.g. a restarted process) replaces the old session.
    const closedWith = once(a, 'close');
    const again = await Peer.connect({ server: addr(s), id: 'good-a', token: a.token!, localAddress: '127.0.0.2' });
    cleanup.push(() => again.close());
    const [err] = await closedWith;
    expect(err).toMatchObject({ code: 'ERR_REPLACED' });
    again.on('connection', (sock) => sock.destroy());
    const r = await again.dial('good-b');
    r.socket.destroy();
  });

  it('closes a slowloris at the handshake deadline', async () => {
    const { s, check } = await arena({ handshakeTimeoutMs: 400 });
    const sock = await raw(s);
    const frame = Buffer.concat([encodeFrame(0x01, Buffer.alloc(40))]);
    let sent = 0;
    let replied: string | undefined;
    void next(sock, 10_000).then((m) => (replied = m?.type === 'error' ? m.code : undefined));
    // One byte every 50 ms (bounded loop): never completes a frame before the deadline.
    for (let i = 0; i < 30 && !sock.destroyed && replied === undefined; i++) {
      sock.write(frame.subarray(sent, sent + 1));
      sent++;
      await sleep(50);
    }
    await until(() => replied !== undefined);
    expect(replied).toBe('ERR_HANDSHAKE_TIMEOUT');
    await check();
  });

  it('limits connections per IP and the connection rate per IP, not other addresses', async () => {
    const { s, check } = await arena({ maxConnectionsPerIp: 10, connectionBurstPerIp: 1000, connectionRatePerIp: 1000 });
    const held: Socket[] = [];
    for (let i = 0; i < 10; i++) held.push(await raw(s));
    expect(await codeFor(s, Buffer.alloc(0))).toBe('ERR_TOO_MANY_CONNECTIONS');
    await check();
    held.forEach((h) => h.destroy());

    const s2 = await server({ connectionBurstPerIp: 5, connectionRatePerIp: 0.01 });
    cleanup.push(() => s2.close());
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 8; i++) {
      const sock = await raw(s2);
      codes.push((await next(sock, 300))?.type === 'error' ? 'refused' : 'ok');
      sock.destroy();
    }
    expect(codes.filter((c) => c === 'refused').length).toBe(3);
    const other = await raw(s2, '127.0.0.2');
    send(other, hello('x'));
    expect(await next(other)).toMatchObject({ type: 'challenge' });
    other.destroy();
  });

  it('caps simultaneous connections server-wide', async () => {
    const s = await server({ maxConnections: 3 });
    cleanup.push(() => s.close());
    const held = [await raw(s), await raw(s), await raw(s)];
    expect(await codeFor(s, Buffer.alloc(0))).toBe('ERR_TOO_MANY_CONNECTIONS');
    held.forEach((h) => h.destroy());
    expect(s.stats().totals.refused).toBe(1);
  });

  it('rate-limits a frame flood on one connection', async () => {
    const { s, check } = await arena({ frameRate: 10, frameBurst: 20 });
    const sock = await rawPeer(s, 'flooder');
    sock.pause();
    const frames = Buffer.concat(Array.from({ length: 200 }, (_, i) => encodeFrame(0x05, Buffer.from([0, 0, 0, i, 0, 0, 0, 0]))));
    sock.write(frames);
    sock.resume();
    let code: string | undefined;
    sock.removeAllListeners('data');
    const got = await new Promise<string | undefined>((resolve) => {
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('close', () => {
        const all = Buffer.concat(chunks);
        resolve(all.includes(Buffer.from('ERR_RATE_LIMITED')) ? 'ERR_RATE_LIMITED' : undefined);
      });
    });
    code = got;
    expect(code).toBe('ERR_RATE_LIMITED');
    await check();
  });

  it('disconnects an idle registered peer', async () => {
    // The good peers ping every 50 ms as the server asks; the raw one never does.
    const { s, check } = await arena({ idleTimeoutMs: 300, keepaliveMs: 50 });
    const sock = await rawPeer(s, 'idler');
    expect(await closed(sock)).toBe(true);
    await until(() => Object.keys(s.stats().errors).length > 0);
    expect(s.stats().errors).toEqual({ ERR_IDLE_TIMEOUT: 1 });
    await check();
  });

  it('hands relay joins to the relay hook with the bytes that followed', async () => {
    let handed: { rest: Buffer; body: Uint8Array } | undefined;
    const s = await server({
      relay: {
        onRelayJoin(sock, join, rest) {
          handed = { rest, body: join.body };
          sock.end('paired');
        },
      },
    });
    cleanup.push(() => s.close());
    const sock = await raw(s);
    send(sock, Buffer.concat([encodeFrame(0x40, Buffer.from('token')), Buffer.from('payload')]));
    let reply = '';
    sock.on('data', (d: Buffer) => (reply += d.toString()));
    await closed(sock);
    expect(reply).toBe('paired');
    expect(Buffer.from(handed!.body).toString()).toBe('token');
    expect(handed!.rest.toString()).toBe('payload');
  });
});

describe('protocol versions', () => {
  it('answers a version 1 peer with an error frame of version 1 that names both versions', async () => {
    const { s, check } = await arena();
    const sock = await raw(s);
    // A version 1 hello: the same type byte, framed with version 1.
    sock.write(encodeFrameAs(1, 0x01, encodeBody({ type: 'hello', id: 'old', nonce: new Uint8Array(16), software: 'v1', private: [], warm: false })));
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    expect(await closed(sock)).toBe(true);
    const reply = Buffer.concat(chunks);
    expect([reply[0], reply[1], reply[2], reply[3]]).toEqual([0x54, 0x50, 1, 0x07]);
    const msg = decodeMessage({ type: reply[3]!, body: reply.subarray(HEADER_SIZE, HEADER_SIZE + reply.readUInt16BE(4)) });
    expect(msg).toMatchObject({ type: 'error', code: 'ERR_UNSUPPORTED_VERSION' });
    expect((msg as { message: string }).message).toMatch(/version 1\b.*version 2\b/);
    await check();
  });

  it('a peer refused by a version 1 server fails with ERR_UNSUPPORTED_VERSION naming both versions, never hangs', async () => {
    const { createServer } = await import('node:net');
    // What a version 1 server does with a version 2 frame: its decoder refuses the version byte and answers with a
    // version 1 error frame, then closes.
    const old = createServer((c) => {
      c.on('error', () => undefined);
      c.once('data', () => c.end(encodeFrameAs(1, 0x07, encodeBody({ type: 'error', code: 'ERR_UNSUPPORTED_VERSION', message: 'Unsupported protocol version 2' }))));
    });
    old.listen(0, '127.0.0.1');
    await once(old, 'listening');
    cleanup.push(() => new Promise<void>((r) => old.close(() => r())));
    const before = await stableFdCount();
    const port = (old.address() as { port: number }).port;
    const err = await Peer.connect({ server: `127.0.0.1:${port}`, id: 'new', reconnect: false, connectTimeoutMs: 5000 }).then(
      () => undefined,
      (e: { code: string; message: string }) => e,
    );
    expect(err?.code).toBe('ERR_UNSUPPORTED_VERSION');
    expect(err?.message).toMatch(/version 1\b.*version 2\b/);
    expect(await settleFds(before)).toBe(before);
  });

  it('the decoder names the version it got and the one it speaks', () => {
    const d = new FrameDecoder();
    d.write(Buffer.from([0x54, 0x50, 1, 0x01, 0, 0]));
    expect(() => d.read()).toThrow(/version 1 is not supported: this end speaks version 2/);
  });
});
