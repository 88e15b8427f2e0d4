/**
 * The tunnel handshake (lib/tunnel/handshake.ts) between two ends of a loopback connection: the key proof both
 * ways, the refusals and their codes on both sides, TLS-PSK encryption, replay and version checks.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';

import { connectorHandshake, exposerHandshake } from '../lib/tunnel/handshake.js';
import { OPEN, TUNNEL_VERSION } from '../lib/tunnel/wire.js';
import { socketPair } from './helpers/pair.js';

type Side = { key?: string; encrypt?: boolean };

async function run(c: Side, e: Side & { allowed?: boolean }, pair?: [Socket, Socket]) {
  const [a, b] = pair ?? (await socketPair());
  a.on('error', () => {});
  b.on('error', () => {});
  const key = (k?: string) => (k === undefined ? undefined : Buffer.from(k));
  const settle = <T>(p: Promise<T>) => p.then((v) => ({ ok: true as const, v }), (err: { code: string; message: string }) => ({ ok: false as const, err }));
  const [cr, er] = await Promise.all([
    settle(connectorHandshake(a, { key: key(c.key), encrypt: c.encrypt ?? true, selfId: 'client', peerId: 'svc', timeoutMs: 3000 })),
    settle(exposerHandshake(b, { key: key(e.key), encrypt: e.encrypt ?? true, selfId: 'svc', peerId: 'client', allowed: e.allowed ?? true, timeoutMs: 3000 })),
  ]);
  return { a, b, cr, er };
}

async function roundTrip(x: Duplex, y: Duplex): Promise<void> {
  const payload = Buffer.from('marker-0123456789'.repeat(100));
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve) => y.on('data', (d: Buffer) => (got.push(d), Buffer.concat(got).length >= payload.length && resolve())));
  x.write(payload);
  await done;
  expect(Buffer.concat(got).equals(payload)).toBe(true);
}

describe('tunnel handshake', () => {
  it('with the same key and encryption: both sides get a TLS 1.3 stream that carries bytes both ways', async () => {
    const { a, b, cr, er } = await run({ key: 'k1' }, { key: 'k1' });
    expect(cr.ok && er.ok).toBe(true);
    if (!cr.ok || !er.ok) return;
    expect(cr.v).toBeInstanceOf(TLSSocket);
    expect((cr.v as TLSSocket).getProtocol()).toBe('TLSv1.3');
    await roundTrip(cr.v, er.v);
    await roundTrip(er.v, cr.v);
    a.destroy();
    b.destroy();
  });

  it('with the same key and no encryption: the raw sockets, proven', async () => {
    const { a, b, cr, er } = await run({ key: 'k1', encrypt: false }, { key: 'k1', encrypt: false });
    expect(cr.ok && cr.v).toBe(a);
    expect(er.ok && er.v).toBe(b);
    await roundTrip(a, b);
    a.destroy();
    b.destroy();
  });

  it('without keys on either side: accepted, raw', async () => {
    const { a, b, cr, er } = await run({}, {});
    expect(cr.ok && cr.v).toBe(a);
    expect(er.ok && er.v).toBe(b);
    a.destroy();
    b.destroy();
  });

  it.each([
    ['a wrong key', { key: 'k2' }, { key: 'k1' }, 'ERR_SERVICE_KEY', /refused by the service: wrong key$/],
    ['no key', {}, { key: 'k1' }, 'ERR_SERVICE_KEY', /refused by the service: wrong key \(the service requires a key/],
    ['a key the service lacks', { key: 'k1' }, {}, 'ERR_SERVICE_KEY', /refused by the service: wrong key/],
    ['one side with --no-encrypt', { key: 'k1', encrypt: false }, { key: 'k1' }, 'ERR_TUNNEL_ENCRYPTION', /refused by the service/],
  ])('%s: refused, with the code on both sides', async (_name, c, e, code, message) => {
    const { a, b, cr, er } = await run(c, e);
    expect(cr.ok).toBe(false);
    expect(er.ok).toBe(false);
    if (cr.ok || er.ok) return;
    expect(cr.err.code).toBe(code);
    expect(cr.err.message).toMatch(message);
    expect(er.err.code).toBe(code);
    a.destroy();
    b.destroy();
  });

  it('a peer not allowed: refused with ERR_SERVICE_NOT_ALLOWED', async () => {
    const { a, b, cr, er } = await run({ key: 'k1' }, { key: 'k1', allowed: false });
    expect(!cr.ok && cr.err.code).toBe('ERR_SERVICE_NOT_ALLOWED');
    expect(!er.ok && er.err.code).toBe('ERR_SERVICE_NOT_ALLOWED');
    a.destroy();
    b.destroy();
  });

  it('garbage instead of a handshake: the service refuses with ERR_SERVICE_KEY', async () => {
    const [a, b] = await socketPair();
    a.on('error', () => {});
    const refused = exposerHandshake(b, { key: Buffer.from('k1'), encrypt: true, selfId: 'svc', peerId: 'client', allowed: true, timeoutMs: 3000 });
    a.write(Buffer.alloc(60, 0x41));
    await expect(refused).rejects.toMatchObject({ code: 'ERR_SERVICE_KEY' });
    a.destroy();
    b.destroy();
  });

  it('a replayed proof (the bytes of an accepted connection sent again) is refused', async () => {
    // Record what a connecting side with the right key sends on one connection...
    const [a1, b1] = await socketPair();
    const sent: Buffer[] = [];
    const write = a1.write.bind(a1);
    a1.write = ((chunk: Buffer, ...rest: never[]) => (sent.push(Buffer.from(chunk)), write(chunk, ...rest))) as typeof a1.write;
    const first = await run({ key: 'k1', encrypt: false }, { key: 'k1', encrypt: false }, [a1, b1]);
    expect(first.cr.ok && first.er.ok).toBe(true);
    a1.destroy();
    b1.destroy();
    // ...and replay it on another: the service's nonce is new, so the proof does not fit.
    const [a2, b2] = await socketPair();
    a2.on('error', () => {});
    const refused = exposerHandshake(b2, { key: Buffer.from('k1'), encrypt: false, selfId: 'svc', peerId: 'client', allowed: true, timeoutMs: 3000 });
    a2.write(Buffer.concat(sent));
    await expect(refused).rejects.toMatchObject({ code: 'ERR_SERVICE_KEY' });
    a2.destroy();
    b2.destroy();
  });

  it('a version-1 connecting side (OPEN first) gets ERR_UNSUPPORTED_VERSION naming both versions', async () => {
    const [a, b] = await socketPair();
    a.on('error', () => {});
    const refused = exposerHandshake(b, { key: undefined, encrypt: true, selfId: 'svc', peerId: 'client', allowed: true, timeoutMs: 3000 });
    a.write(Buffer.from([OPEN]));
    await expect(refused).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_VERSION', message: expect.stringMatching(new RegExp(`protocol 1, this side ${TUNNEL_VERSION}`)) });
    a.destroy();
    b.destroy();
  });
});
