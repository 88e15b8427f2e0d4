import { once } from 'node:events';
import type { Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { Peer } from '../lib/peer/peer.js';
import type { AttemptEvent } from '../lib/peer/types.js';
import type { RendezvousServer } from '../lib/server/server.js';
import { until } from './helpers/poll.js';
import { LOOSE, addr, echoCheck, stableFdCount, peer, rawPeer, server, settleFds } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(options = {}, ids = ['alice', 'bob'], peerOptions = {}): Promise<{ s: RendezvousServer; peers: Peer[] }> {
  const s = await server({ ...LOOSE, ...options });
  cleanup.push(() => s.close());
  const peers: Peer[] = [];
  for (const id of ids) {
    const p = await peer(s, id, peerOptions);
    cleanup.push(() => p.close());
    peers.push(p);
  }
  return { s, peers };
}

/** Collects incoming sockets of a peer in arrival order. */
function incoming(p: Peer): Socket[] {
  const got: Socket[] = [];
  p.on('connection', (sock) => {
    sock.on('error', () => undefined);
    got.push(sock as Socket); // these tests dial direct: a plain socket
  });
  return got;
}

describe('Peer end to end (loopback)', () => {
  for (const reversal of [true, false]) {
    it(`dials both ways and carries data both ways (reversal ${reversal ? 'on' : 'off'})`, async () => {
      const { peers } = await setup({ reversal });
      const [a, b] = peers as [Peer, Peer];
      const inA = incoming(a);
      const inB = incoming(b);
      const events: AttemptEvent[] = [];
      a.on('attempt', (e) => events.push(e));

      const ab = await a.dial('bob');
      expect(ab).toMatchObject({ path: 'direct', role: 'initiator', peerId: 'bob', attempt: 1 });
      expect(ab.mode).toBe(reversal ? 'reverse' : 'sync');
      await until(() => inB.length === 1);
      expect(await echoCheck(ab.socket, inB[0]!, 'x'.repeat(100_000))).toEqual(['a:' + 'x'.repeat(100_000), 'b:' + 'x'.repeat(100_000)]);

      const ba = await b.dial('alice');
      expect(ba.role).toBe('initiator');
      await until(() => inA.length === 1);
      expect(await echoCheck(ba.socket, inA[0]!, 'hello')).toEqual(['a:hello', 'b:hello']);
      expect(events.filter((e) => e.outcome === 'ok').map((e) => e.role).sort()).toEqual(['initiator', 'responder']);
      for (const s of [ab.socket, ba.socket, ...inA, ...inB]) s.destroy();
    });
  }

  it('completes many dials in a row with zero failures and no fd growth', async () => {
    const { s, peers } = await setup();
    const [a, b] = peers as [Peer, Peer];
    const inA = incoming(a);
    const inB = incoming(b);
    const before = await stableFdCount();
    for (let i = 0; i < 40; i++) {
      const forward = i % 2 === 0;
      const r = await (forward ? a.dial('bob') : b.dial('alice'));
      const list = forward ? inB : inA;
      await until(() => list.length > 0);
      const other = list.shift()!;
      expect(await echoCheck(r.socket, other, `m${i}`)).toEqual([`a:m${i}`, `b:m${i}`]);
      r.socket.destroy();
      other.destroy();
    }
    await until(() => s.stats().totals.succeeded === 40);
    expect(s.stats().totals).toMatchObject({ succeeded: 40, failed: 0 });
    expect(await settleFds(before)).toBe(before);
  });

  for (const reversal of [true, false]) {
    it(`completes 60 concurrent dials with zero failures, data both ways, and no fd growth (reversal ${reversal})`, async () => {
      const { s, peers } = await setup({ reversal });
      const [a, b] = peers as [Peer, Peer];
      const inB = incoming(b);
      const inA = incoming(a);
      const before = await stableFdCount();
      const results = await Promise.allSettled(
        Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? b.dial('alice') : a.dial('bob'))),
      );
      const failures = results.filter((r) => r.status === 'rejected');
      expect(failures.map((f) => (f as PromiseRejectedResult).reason?.code)).toEqual([]);
      await until(() => inA.length + inB.length === 60);
      expect(inA.length + inB.length).toBe(60);
      // Every dialled socket is paired with exactly one accepted socket: echo over all of them, matched by port.
      const accepted = new Map([...inA, ...inB].map((x) => [`${x.remotePort}:${x.localPort}`, x]));
      await Promise.all(
        results.map(async (r, i) => {
          const sock = (r as PromiseFulfilledResult<{ socket: Socket }>).value.socket;
          const other = accepted.get(`${sock.localPort}:${sock.remotePort}`)!;
          expect(other).toBeDefined();
          expect(await echoCheck(sock, other, `n${i}`)).toEqual([`a:n${i}`, `b:n${i}`]);
        }),
      );
      for (const r of results) (r as PromiseFulfilledResult<{ socket: Socket }>).value.socket.destroy();
      for (const x of [...inA, ...inB]) x.destroy();
      expect(s.stats().totals.failed).toBe(0);
      expect(await settleFds(before)).toBe(before);
    });
  }

  it('rejects a dial to an offline peer with ERR_PEER_OFFLINE and a peer-offline attempt event', async () => {
    const { peers } = await setup();
    const a = peers[0]!;
    const events: AttemptEvent[] = [];
    a.on('attempt', (e) => events.push(e));
    await expect(a.dial('nobody')).rejects.toMatchObject({ code: 'ERR_PEER_OFFLINE', peerId: 'nobody' });
    expect(events).toMatchObject([{ outcome: 'peer-offline', attempt: 0, peerId: 'nobody' }]);
    await expect(a.dial('alice')).rejects.toMatchObject({ code: 'ERR_INVALID_TARGET' });
  });

  it('rejects with ERR_PEER_REFUSED when the other side declines', async () => {
    const { s, peers } = await setup({}, ['alice', 'bob']);
    const picky = await Peer.connect({ server: addr(s), id: 'picky', accept: ({ peerId }) => peerId !== 'alice' });
    cleanup.push(() => picky.close());
    incoming(picky);
    await expect(peers[0]!.dial('picky')).rejects.toMatchObject({ code: 'ERR_PEER_REFUSED' });
    const ok = await peers[1]!.dial('picky');
    ok.socket.destroy();
    // A peer with no 'connection' listener refuses too, instead of accepting and dropping the socket.
    await expect(peers[1]!.dial('alice')).rejects.toMatchObject({ code: 'ERR_PEER_REFUSED' });
  });

  it('rejects with ERR_PEER_OFFLINE when the other side leaves during the dial', async () => {
    const { s, peers } = await setup({}, ['alice']);
    const a = peers[0]!;
    const events: AttemptEvent[] = [];
    a.on('attempt', (e) => events.push(e));
    const leaver = await Peer.connect({
      server: addr(s),
      id: 'leaver',
      accept: () => new Promise<boolean>(() => void setTimeout(() => void leaver.close(), 20)),
    });
    leaver.on('connection', (sock) => sock.destroy());
    await expect(a.dial('leaver')).rejects.toMatchObject({ code: 'ERR_PEER_OFFLINE' });
    expect(events.at(-1)).toMatchObject({ outcome: 'peer-offline', peerId: 'leaver' });
  });

  it('honours the abort signal and the deadline without hanging or leaking', async () => {
    const { s, peers } = await setup({}, ['alice']);
    const a = peers[0]!;
    // A registered peer that never answers the server's prepare: the dial can only end by its deadline.
    const mute = await rawPeer(s, 'mute');
    cleanup.push(() => mute.destroy());
    const before = await stableFdCount();
    await expect(a.dial('mute', { timeoutMs: 300 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    const ac = new AbortController();
    const p = a.dial('mute', { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(await settleFds(before)).toBe(before);
  });

  it('fails fast with ERR_SERVER_UNREACHABLE when no server listens', async () => {
    const s = await server();
    const port = s.address().port;
    await s.close();
    await expect(Peer.connect({ server: `127.0.0.1:${port}`, id: 'x' })).rejects.toMatchObject({ code: 'ERR_SERVER_UNREACHABLE' });
  });

  it('validates arguments with Node-style codes', async () => {
    await expect(Peer.connect({ server: 'nope', id: 'x' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(Peer.connect({ server: '127.0.0.1:1', id: 'has space' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    const { peers } = await setup({}, ['alice']);
    await expect(peers[0]!.dial('bob', { timeoutMs: -1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    // @ts-expect-error a misspelt strategy name fails the type check too
    await expect(peers[0]!.dial('bob', { strategy: 'teleport' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
  });

  it('authenticates with a shared secret or a derived id key, and rejects a wrong secret', async () => {
    const { s, peers } = await setup({ secret: 'hunter2' }, ['alice', 'bob'], { secret: 'hunter2' });
    const inB = incoming(peers[1]!);
    const r = await peers[0]!.dial('bob');
    await until(() => inB.length === 1);
    r.socket.destroy();
    inB[0]!.destroy();
    await expect(Peer.connect({ server: addr(s), id: 'eve', secret: 'wrong' })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
    await expect(Peer.connect({ server: addr(s), id: 'eve' })).rejects.toMatchObject({ code: 'ERR_AUTH_REQUIRED' });
    const { deriveIdKey } = await import('../lib/protocol/crypto.js');
    const carol = await Peer.connect({ server: addr(s), id: 'carol', idKey: deriveIdKey('hunter2', 'carol') });
    cleanup.push(() => carol.close());
    expect(carol.online).toBe(true);
  });

  it('reconnects with backoff and re-registers after the server restarts', async () => {
    const s = await server(LOOSE);
    const port = s.address().port;
    // The restarted server takes the first one's probe ports too: PORT+1 and PORT+2 of a system-chosen port may
    // belong to anybody.
    const probePorts = [...s.probePorts!] as [number, number];
    const a = await Peer.connect({ server: addr(s), id: 'alice', reconnect: { minDelayMs: 20, maxDelayMs: 200 } });
    cleanup.push(() => a.close());
    const token = a.token;
    const offline = once(a, 'offline');
    await s.close();
    await offline;
    expect(a.online).toBe(false);
    const s2 = await server({ ...LOOSE, port, natProbe: { ports: probePorts } });
    cleanup.push(() => s2.close());
    await once(a, 'online');
    expect(a.online).toBe(true);
    expect(s2.stats().peers).toBe(1);
    // A fresh server knows nothing: the old token is not needed, the id is simply re-registered.
    expect(token).toBeDefined();
  });
});

