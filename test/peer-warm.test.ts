/**
 * Warm ports (protocol v2): the control connection leaves from a reusable port whose mapping the server knows, so
 * attempt 1 punches from it with no observe connection; where it cannot be used, the dial falls back to observing
 * a fresh port and still connects.
 */
import type { Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import type { Peer } from '../lib/peer/peer.js';
import type { AttemptEvent } from '../lib/peer/types.js';
import type { RendezvousServer } from '../lib/server/server.js';
import { until } from './helpers/poll.js';
import { LOOSE, echoCheck, peer, server, settleFds, stableFdCount } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(ids: string[], options = {}): Promise<{ s: RendezvousServer; peers: Peer[]; inbox: Map<string, Socket[]> }> {
  const s = await server({ ...LOOSE, natProbe: false, ...options });
  cleanup.push(() => s.close());
  const peers: Peer[] = [];
  const inbox = new Map<string, Socket[]>();
  for (const id of ids) {
    const p = await peer(s, id, { natProbe: false });
    cleanup.push(() => p.close());
    const got: Socket[] = [];
    inbox.set(id, got);
    p.on('connection', (sock) => {
      sock.on('error', () => undefined);
      got.push(sock as Socket);
    });
    peers.push(p);
  }
  return { s, peers, inbox };
}

/** Connections the server has accepted so far (control, observe and relay alike). */
const accepted = (s: RendezvousServer): number => s.stats().totals.connections;

describe('warm ports', () => {
  for (const reversal of [true, false]) {
    it(`a dial between two warm peers opens no observe connection (reversal ${reversal})`, async () => {
      const { s, peers, inbox } = await setup(['alice', 'bob'], { reversal });
      const [a] = peers as [Peer, Peer];
      const before = accepted(s);
      const r = await a.dial('bob', { strategy: 'direct' });
      expect(r).toMatchObject({ path: 'direct', attempt: 1, mode: reversal ? 'reverse' : 'sync' });
      expect(r.timings.observeMs).toBe(0);
      expect(accepted(s) - before).toBe(0); // nothing but the two control connections
      expect(s.stats().totals.warmAttempts).toBe(1);
      await until(() => inbox.get('bob')!.length === 1);
      expect(await echoCheck(r.socket, inbox.get('bob')![0]!, 'warm')).toEqual(['a:warm', 'b:warm']);
      // The punched socket leaves from the control connection's port.
      expect((r.socket as Socket).localPort).toBe(a.observed!.port);
    });
  }

  it('a stale mapping (the server holds a port the NAT no longer maps) fails attempt 1 and connects on a fresh port', async () => {
    const { s, peers } = await setup(['alice', 'bob']);
    const [a] = peers as [Peer, Peer];
    // What a NAT that rebinds bob's port looks like to the server: its record points somewhere that leads nowhere.
    const warm = s.current('bob')!.warm!;
    warm.public = { host: '127.0.0.9', port: 9 };
    warm.private = [];
    const events: AttemptEvent[] = [];
    a.on('attempt', (e) => events.push(e));
    const before = accepted(s);
    const r = await a.dial('bob', { strategy: 'direct' });
    expect(r.attempt).toBe(2);
    expect(events[0]).toMatchObject({ attempt: 1, remote: { host: '127.0.0.9', port: 9 } });
    expect(events[0]!.outcome).not.toBe('ok');
    expect(accepted(s) - before).toBe(2); // attempt 2 observed both sides' fresh ports
    r.socket.destroy();
  });

  it('concurrent dials from one port: to several peers and several to the same peer all connect, and nothing leaks', async () => {
    const { s, peers, inbox } = await setup(['alice', 'bob', 'carol', 'dave']);
    const [a] = peers as [Peer, Peer, Peer, Peer];
    const before = await stableFdCount();
    const targets = ['bob', 'carol', 'dave', 'bob', 'bob', 'carol'];
    const results = await Promise.all(targets.map((t) => a.dial(t, { strategy: 'direct' })));
    expect(results.map((r) => r.peerId)).toEqual(targets);
    await until(() => [...inbox.values()].reduce((n, l) => n + l.length, 0) === targets.length);
    // Only one punch at a time may use a port's listener: the others observed fresh ports.
    expect(s.stats().totals.warmAttempts).toBeGreaterThanOrEqual(1);
    expect(s.stats().totals.warmAttempts).toBeLessThan(targets.length);
    const bobs = inbox.get('bob')!;
    for (const [i, r] of results.entries()) {
      if (r.peerId !== 'bob') continue;
      const far = bobs.find((b) => b.remotePort === (r.socket as Socket).localPort)!;
      expect(await echoCheck(r.socket, far, `n${i}`)).toEqual([`a:n${i}`, `b:n${i}`]);
    }
    for (const r of results) r.socket.destroy();
    for (const l of inbox.values()) for (const sock of l.splice(0)) sock.destroy();
    expect(await settleFds(before)).toBe(before);
  });

  it('dials the same peer again and again on the warm ports once the earlier sockets are closed', async () => {
    const { s, peers, inbox } = await setup(['alice', 'bob']);
    const [a] = peers as [Peer, Peer];
    for (let i = 0; i < 5; i++) {
      const r = await a.dial('bob', { strategy: 'direct' });
      await until(() => inbox.get('bob')!.length === 1);
      const far = inbox.get('bob')!.pop()!;
      // Closing both ends tells the server (release) that the pair's warm 4-tuples are free again.
      const gone = Promise.all([r.socket, far].map((x) => new Promise((res) => (x as Socket).once('close', res))));
      r.socket.destroy();
      far.destroy();
      await gone;
      await until(() => s.stats().coordinations === 0);
      await new Promise((res) => setTimeout(res, 50)); // the release frames travel on the control connections
    }
    expect(s.stats().totals.warmAttempts).toBe(5);
  });

  it('an open connection keeps the pair off the warm 4-tuple: the next dial between them uses a fresh port on one side', async () => {
    const { s, peers, inbox } = await setup(['alice', 'bob']);
    const [a] = peers as [Peer, Peer];
    const first = await a.dial('bob', { strategy: 'direct' });
    const second = await a.dial('bob', { strategy: 'direct' });
    expect(s.stats().totals.warmAttempts).toBe(1);
    // One side observed a fresh port (which one depends on whose warm port was still busy): a new 4-tuple.
    const tuple = (x: Socket): string => `${x.localPort}-${x.remotePort}`;
    expect(tuple(second.socket as Socket)).not.toBe(tuple(first.socket as Socket));
    await until(() => inbox.get('bob')!.length === 2);
    for (const x of [first.socket, second.socket, ...inbox.get('bob')!]) x.destroy();
  });

  it('a warm port the server thinks free but the peer finds busy fails fast and the dial moves to fresh ports', async () => {
    const { peers } = await setup(['alice', 'bob']);
    const [a, b] = peers as [Peer, Peer];
    // Bob's warm port is taken by a punch the server does not know of.
    const slot = (b as unknown as { env: { warm: { claim(): boolean; release(): void } } }).env.warm;
    expect(slot.claim()).toBe(true);
    cleanup.push(() => slot.release());
    const codes: (string | undefined)[] = [];
    b.on('attempt', (e) => codes.push(e.code));
    const r = await a.dial('bob', { strategy: 'direct' });
    expect(r.attempt).toBe(2);
    expect(codes[0]).toBe('ERR_WARM_PORT_BUSY');
    r.socket.destroy();
  });
});

describe('warm ports: every error path ends coded, with nothing leaked', () => {
  it('a hopeless pair (symmetric NAT filtering by port, other side not reachable) ends at once with ERR_PUNCH_UNLIKELY as attempt 1', async () => {
    const { s, peers } = await setup(['alice', 'bob']);
    const [a] = peers as [Peer, Peer];
    // Alice reported a per-destination mapping filtering by port; bob sits behind another public address, not
    // directly reachable: neither side's SYN can arrive.
    s.current('alice')!.warm!.mapping = 'dependent';
    s.current('alice')!.warm!.filtering = 'port-dependent';
    const bob = s.current('bob')!.warm!;
    bob.public = { host: '127.0.0.9', port: 9 };
    bob.private = [];
    const before = await stableFdCount();
    const err = (await a.dial('bob', { strategy: 'direct' }).catch((e: unknown) => e)) as { code: string; attempts: AttemptEvent[] };
    expect(err.code).toBe('ERR_PUNCH_UNLIKELY');
    expect(err.attempts.map((e) => [e.attempt, e.code])).toEqual([[1, 'ERR_PUNCH_UNLIKELY']]);
    expect(s.stats().totals.warmAttempts).toBe(0); // nothing was punched
    expect(await settleFds(before)).toBe(before);
  });

  it('the other side going away during the folded attempt: ERR_PEER_OFFLINE', async () => {
    const { s, peers } = await setup(['alice']);
    const [a] = peers as [Peer];
    // Bob holds the folded attempt until a decision that never comes, and leaves meanwhile.
    let asked!: () => void;
    const decision = new Promise<void>((resolve) => (asked = resolve));
    const b = await peer(s, 'bob', {
      natProbe: false,
      accept: () => {
        asked();
        return new Promise<boolean>(() => undefined);
      },
    });
    b.on('connection', (sock) => sock.destroy());
    const before = await stableFdCount();
    const dial = a.dial('bob', { strategy: 'direct', timeoutMs: 10_000 }).catch((e: unknown) => e);
    await decision;
    await b.close();
    expect(await dial).toMatchObject({ code: 'ERR_PEER_OFFLINE' });
    // Bob's control connection is gone too: both of its ends live in this process.
    expect(await settleFds(before - 2)).toBe(before - 2);
  });

  it('abort and deadline during the warm punch: ABORT_ERR and ETIMEDOUT', async () => {
    const { s, peers } = await setup(['alice', 'bob'], { attemptTimeoutMs: 5000 });
    const [a] = peers as [Peer, Peer];
    // Both records lead nowhere, so the warm punches run (refused, retried) until they are stopped.
    for (const id of ['alice', 'bob']) {
      const warm = s.current(id)!.warm!;
      warm.public = { host: '127.0.0.9', port: 9 };
      warm.private = [];
    }
    const before = await stableFdCount();
    const ac = new AbortController();
    const aborted = a.dial('bob', { strategy: 'direct', signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await expect(aborted).rejects.toMatchObject({ code: 'ABORT_ERR' });
    await until(() => s.stats().coordinations === 0);
    await expect(a.dial('bob', { strategy: 'direct', timeoutMs: 300 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    await until(() => s.stats().coordinations === 0);
    expect(await settleFds(before)).toBe(before);
  });
});
