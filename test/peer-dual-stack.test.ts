/**
 * Dual-stack on loopback: a server listening on both families (`host: '::'`), peers registering IPv4 over their
 * control connection and IPv6 with `register-family` (dualStackServer), dials that try IPv6 first, and an
 * IPv4-only peer that still connects over IPv4.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import type { Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { random } from '../lib/protocol/crypto.js';
import { Peer } from '../lib/peer/peer.js';
import { permanentFor, registerSecondFamily } from '../lib/peer/families.js';
import type { PeerOptions } from '../lib/peer/types.js';
import type { RendezvousServer } from '../lib/server/server.js';
import { until } from './helpers/poll.js';
import { LOOSE, echoCheck, next, send, server, settleFds, stableFdCount } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function dualServer(): Promise<RendezvousServer> {
  const s = await server({ ...LOOSE, natProbe: false, host: '::' });
  cleanup.push(() => s.close());
  return s;
}

/** A peer registered over IPv4; with `dual`, also over IPv6 (resolves once the second family is registered). */
async function start(s: RendezvousServer, id: string, dual: boolean, extra: Partial<PeerOptions> = {}): Promise<{ p: Peer; inbox: Socket[] }> {
  const port = s.address().port;
  const p = await Peer.connect({
    server: `127.0.0.1:${port}`, id, natProbe: false, ...(dual ? { dualStackServer: `[::1]:${port}` } : {}), ...extra,
  });
  cleanup.push(() => p.close());
  if (dual) {
    await until(() => p.secondFamily !== undefined);
    expect(p.secondFamily).toEqual({ family: 6, address: '::1' });
  }
  const inbox: Socket[] = [];
  p.on('connection', (sock) => {
    sock.on('error', () => undefined);
    inbox.push(sock as Socket);
  });
  return { p, inbox };
}

describe('dual-stack dialling', () => {
  it('two dual-stack peers connect over IPv6, from the registered address; the accepting side says so too', async () => {
    const s = await dualServer();
    const a = await start(s, 'alice', true);
    const b = await start(s, 'bob', true);
    const infos: { family: number }[] = [];
    b.p.on('connection', (_sock, info) => infos.push(info));
    const events: { outcome: string; family: number | undefined }[] = [];
    a.p.on('attempt', (e) => events.push(e));
    const r = await a.p.dial('bob', { strategy: 'direct' });
    expect(r).toMatchObject({ path: 'direct', family: 6, attempt: 1, remote: { host: '::1' } });
    expect(events).toMatchObject([{ outcome: 'ok', family: 6 }]);
    expect((r.socket as Socket).localAddress).toBe('::1');
    await until(() => b.inbox.length === 1);
    expect(infos[0]?.family).toBe(6);
    expect(await echoCheck(r.socket, b.inbox[0]!, 'v6')).toEqual(['a:v6', 'b:v6']);
  });

  it('an IPv4-only peer and a dual-stack peer connect over IPv4, both ways', async () => {
    const s = await dualServer();
    const a = await start(s, 'alice', true);
    const c = await start(s, 'carol', false);
    const r1 = await c.p.dial('alice', { strategy: 'direct' });
    expect(r1).toMatchObject({ path: 'direct', family: 4, remote: { host: '127.0.0.1' } });
    const r2 = await a.p.dial('carol', { strategy: 'direct' });
    expect(r2).toMatchObject({ path: 'direct', family: 4, remote: { host: '127.0.0.1' } });
    await until(() => a.inbox.length === 1 && c.inbox.length === 1);
    expect(await echoCheck(r1.socket, a.inbox[0]!, 'v4')).toEqual(['a:v4', 'b:v4']);
  });

  it('repeated IPv6 dials leave no descriptors behind', async () => {
    const s = await dualServer();
    const a = await start(s, 'alice', true);
    const b = await start(s, 'bob', true);
    const base = await stableFdCount();
    for (let i = 0; i < 5; i++) {
      const r = await a.p.dial('bob', { strategy: 'direct' });
      expect(r.family).toBe(6);
      await until(() => b.inbox.length === i + 1);
      r.socket.destroy();
      b.inbox[i]!.destroy();
    }
    expect(await settleFds(base)).toBeLessThanOrEqual(base);
  });
});

describe('register-family', () => {
  async function rawV6(s: RendezvousServer, host = '::1'): Promise<Socket> {
    const sock = connect({ host, port: s.address().port });
    sock.on('error', () => undefined);
    await once(sock, 'connect');
    cleanup.push(() => sock.destroy());
    return sock;
  }

  it('refuses a wrong proof (ERR_INVALID_TOKEN) and an unknown id', async () => {
    const s = await dualServer();
    await start(s, 'alice', false);
    for (const id of ['alice', 'nobody']) {
      const sock = await rawV6(s);
      send(sock, { type: 'register-family', id, nonce: random(16), mac: random(32), private: [] });
      expect(await next(sock)).toMatchObject({ type: 'error', code: 'ERR_INVALID_TOKEN' });
    }
  });

  it('a dualStackServer in the control family is refused (ERR_FAMILY_MISMATCH) without touching the server', async () => {
    const base = { server: { host: '127.0.0.1', port: 1 }, family: 4 as const, localAddress: undefined, punch: {}, natMapping: () => 'unknown' as const, natFiltering: () => 'unknown' as const, warm: undefined };
    await expect(
      registerSecondFamily({ server: { host: '127.0.0.1', port: 1 }, id: 'alice', sessionKey: random(32), base, timeoutMs: 1000 }),
    ).rejects.toMatchObject({ code: 'ERR_FAMILY_MISMATCH' });
  });

  it('a peer whose control connection is IPv6 registers IPv4 as its second family', async () => {
    const s = await dualServer();
    const p = await Peer.connect({ server: `[::1]:${s.address().port}`, id: 'alice', natProbe: false, dualStackServer: `127.0.0.1:${s.address().port}` });
    cleanup.push(() => p.close());
    await until(() => p.secondFamily !== undefined);
    expect(p.secondFamily?.family).toBe(4);
    expect(s.stats().peers).toBe(1);
  });
});

describe('permanentFor', () => {
  const table = [
    '20010db8000100010000000000000002 02 40 00 80     eth0',
    '20010db80001000100000000000000aa 02 40 00 01     eth0',
    'fe800000000000000000000000000001 02 40 20 80     eth0',
    '00000000000000000000000000000001 01 80 10 80       lo',
  ].join('\n');
  it('keeps a permanent address and replaces a temporary one with the permanent global of its interface', () => {
    expect(permanentFor('2001:db8:1:1::2', table)).toBe('2001:db8:1:1::2');
    expect(permanentFor('2001:db8:1:1::aa', table)).toBe('2001:db8:1:1:0:0:0:2');
    expect(permanentFor('::1', table)).toBe('::1');
    expect(permanentFor('2001:db8:9::1', undefined)).toBe('2001:db8:9::1');
  });
});
