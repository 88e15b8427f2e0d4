/**
 * PeerOptions.natProbe: the peer measures its NAT mapping against the server's probe ports, reports it with every
 * observation, and the server skips punching that cannot work (ERR_PUNCH_UNLIKELY) so `direct-first` can move to
 * the relay at once. Loopback has no NAT: fake probe listeners stand in for a symmetric one, and a raw protocol
 * client for a peer behind a NAT (it reports a LAN address the server does not see).
 */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { startProbeServer } from '../lib/nat-check/probe-server.js';
import { Peer } from '../lib/peer/peer.js';
import type { PeerOptions } from '../lib/peer/types.js';
import { FrameDecoder } from '../lib/protocol/frame.js';
import { decodeMessage, encodeMessage, type Message } from '../lib/protocol/messages.js';
import { LOOSE, addr, server, settleFds, stableFdCount } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** Two probe listeners that report a different public port each: what a symmetric NAT looks like. */
async function symmetricProbes(): Promise<[number, number]> {
  const ports: number[] = [];
  for (let i = 0; i < 2; i++) {
    const srv: Server = createServer((s) => {
      s.on('error', () => undefined);
      s.end(encodeMessage({ type: 'observed', endpoint: { host: '203.0.113.1', port: 20_000 + i } }));
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    cleanup.push(() => new Promise((r) => srv.close(r)));
    ports.push((srv.address() as { port: number }).port);
  }
  return [ports[0]!, ports[1]!];
}

async function natPeer(options: PeerOptions): Promise<{ peer: Peer; nat: Promise<Peer['nat']> }> {
  const peer = await Peer.connect(options);
  cleanup.push(() => peer.close());
  const nat = once(peer, 'nat').then(([result, err]) => (err ? Promise.reject(err) : result));
  return { peer, nat };
}

/**
 * A peer behind a NAT, spoken by hand: it registers, then for each attempt observes from an ordinary port but
 * reports a LAN address, so the server finds it not directly reachable. Collects what the server sends it.
 */
async function nattedRawPeer(serverPort: number, id: string): Promise<{ inbox: Message[]; sock: Socket }> {
  const sock = connect({ host: '127.0.0.1', port: serverPort, localAddress: '127.0.0.3' });
  sock.on('error', () => undefined);
  cleanup.push(() => sock.destroy());
  await once(sock, 'connect');
  const inbox: Message[] = [];
  const dec = new FrameDecoder({ maxFrameSize: 65_535 });
  sock.on('data', (d: Buffer) => {
    dec.write(d);
    for (let f = dec.read(); f; f = dec.read()) {
      const m = decodeMessage(f);
      inbox.push(m);
      if (m.type === 'challenge') sock.write(encodeMessage({ type: 'auth', proof: new Uint8Array(0) }));
      if (m.type === 'ping') sock.write(encodeMessage({ type: 'pong', seq: m.seq }));
      if (m.type === 'prepare') {
        const obs = connect({ host: '127.0.0.1', port: serverPort, localAddress: '127.0.0.3' });
        obs.on('error', () => undefined);
        cleanup.push(() => obs.destroy());
        obs.on('connect', () => {
          obs.resume();
          const lan = [{ host: '10.9.9.9', port: 40_000 }];
          obs.write(encodeMessage({ type: 'observe', coordId: m.coordId, attempt: m.attempt, token: m.token, private: lan, mapping: 'unknown', filtering: 'unknown' }));
        });
      }
    }
  });
  sock.write(encodeMessage({ type: 'hello', id, nonce: new Uint8Array(16), software: 'test', private: [], warm: false }));
  for (let i = 0; i < 200 && !inbox.some((m) => m.type === 'welcome'); i++) await new Promise((r) => setTimeout(r, 10));
  expect(inbox.some((m) => m.type === 'welcome')).toBe(true);
  return { inbox, sock };
}

describe('NAT probe', () => {
  it('finds no NAT on loopback against real probe listeners, and reports the mapping as independent', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    const probes = await startProbeServer({ host: '127.0.0.1' });
    cleanup.push(() => probes.close());
    const { peer, nat } = await natPeer({ server: addr(s), id: 'alice', natProbe: { ports: [probes.ports[0]!, probes.ports[1]!] } });
    expect(peer.natMapping).toBe('unknown');
    const result = await nat;
    expect(result).toMatchObject({ nat: 'none', mapping: 'endpoint-independent' });
    expect(peer.nat).toBe(result);
    expect(peer.natMapping).toBe('independent');
  });

  it('recognises a symmetric NAT, and the server then refuses a punch that cannot work with ERR_PUNCH_UNLIKELY', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    const { peer: alice, nat } = await natPeer({ server: addr(s), id: 'alice', natProbe: { ports: await symmetricProbes() } });
    expect(await nat).toMatchObject({ nat: 'present', mapping: 'endpoint-dependent' });
    expect(alice.natMapping).toBe('dependent');
    const bob = await nattedRawPeer(s.address().port, 'bob');
    const err = await alice.dial('bob', { strategy: 'direct', timeoutMs: 10_000 }).then(
      () => undefined,
      (e: { code: string; message: string }) => e,
    );
    expect(err?.code).toBe('ERR_PUNCH_UNLIKELY');
    expect(err?.message).toMatch(/initiator's NAT maps per destination/);
    // Decided after one observation round, never after punching: nothing was sent to punch.
    expect(bob.inbox.filter((m) => m.type === 'punch')).toEqual([]);
    for (let i = 0; i < 200 && !bob.inbox.some((m) => m.type === 'end'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(bob.inbox.find((m) => m.type === 'end')).toMatchObject({ outcome: 'failed', code: 'ERR_PUNCH_UNLIKELY' });
  });

  it('punches as usual when the probe fails: the mapping stays unknown and the error is reported', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    // Two ports with nobody listening: a closed probe must cost nothing but the event.
    const free = await startProbeServer({ host: '127.0.0.1' });
    const ports: [number, number] = [free.ports[0]!, free.ports[1]!];
    await free.close();
    const { peer: alice, nat } = await natPeer({ server: addr(s), id: 'alice', natProbe: { ports } });
    await expect(nat).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(alice.natMapping).toBe('unknown');
    const bob = await Peer.connect({ server: addr(s), id: 'bob' });
    cleanup.push(() => bob.close());
    bob.on('connection', (sock) => sock.destroy());
    const r = await alice.dial('bob', { strategy: 'direct' });
    expect(r.path).toBe('direct');
    r.socket.destroy();
  });

  it('closes without leaving a probe socket behind, even with the probe in flight', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    // A probe listener that never answers: the probe would wait for its deadline.
    const mute: Socket[] = [];
    const silent = createServer((sock) => void mute.push(sock.on('error', () => undefined)));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    cleanup.push(() => new Promise((r) => silent.close(r)));
    cleanup.push(() => mute.forEach((m) => m.destroy()));
    const port = (silent.address() as { port: number }).port;
    const baseline = await stableFdCount();
    const peer = await Peer.connect({ server: addr(s), id: 'alice', natProbe: { ports: [port, port + 1] } });
    const events: unknown[] = [];
    peer.on('nat', (...args) => events.push(args));
    for (let i = 0; i < 100 && mute.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(mute.length).toBe(1);
    await peer.close();
    for (const m of mute) m.destroy();
    expect(await settleFds(baseline)).toBe(baseline);
    expect(events).toEqual([]); // an aborted probe reports nothing
  });

  it('rejects bad natProbe options with coded errors', async () => {
    const bad = async (natProbe: unknown): Promise<string> =>
      Peer.connect({ server: '127.0.0.1:9', id: 'x', natProbe } as PeerOptions).then(
        () => 'connected',
        (e: { code: string }) => e.code,
      );
    expect(await bad(true)).toBe('ERR_INVALID_ARG_TYPE');
    expect(await bad({ ports: [1] })).toBe('ERR_INVALID_ARG_VALUE');
    expect(await bad({ ports: [1, 70_000] })).toBe('ERR_OUT_OF_RANGE');
    expect(await bad({ ports: [5, 5] })).toBe('ERR_INVALID_ARG_VALUE');
    expect(await bad({ ports: [5, 6], host: '' })).toBe('ERR_INVALID_ARG_TYPE');
  });
});

describe('NAT probe by default', () => {
  it('startServer opens the probe listeners and announces them; a Peer probes there with no option', async () => {
    const s = await server(LOOSE);
    cleanup.push(() => s.close());
    const ports = s.probePorts!;
    expect(ports).toHaveLength(2);
    expect(ports[0]).not.toBe(ports[1]);
    expect(ports).not.toContain(0); // port 0: system-chosen probe ports
    const { peer, nat } = await natPeer({ server: addr(s), id: 'alice' });
    expect(await nat).toMatchObject({ nat: 'none', mapping: 'endpoint-independent' });
    expect(peer.natMapping).toBe('independent');
    // The server learnt it too (report): its record of alice's warm port carries the mapping.
    for (let i = 0; i < 100 && s.current('alice')!.warm!.mapping !== 'independent'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.current('alice')!.warm!.mapping).toBe('independent');
  });

  it('puts the probes at port + 1 and + 2 for a fixed port, or where natProbe says; natProbe: false opens none', async () => {
    const free = await startProbeServer({ host: '127.0.0.1', ports: [0, 0, 0] });
    const [p1, p2, p3] = free.ports as [number, number, number];
    await free.close();
    const explicit = await server({ ...LOOSE, natProbe: { ports: [p1, p2] } });
    cleanup.push(() => explicit.close());
    expect(explicit.probePorts).toEqual([p1, p2]);
    const off = await server({ ...LOOSE, natProbe: false });
    cleanup.push(() => off.close());
    expect(off.probePorts).toBeUndefined();
    // Without probe ports in welcome a peer has nothing to probe: no `nat` event, mapping unknown.
    const p = await Peer.connect({ server: addr(off), id: 'bob' });
    cleanup.push(() => p.close());
    let probed = false;
    p.on('nat', () => (probed = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(probed).toBe(false);
    // A fixed port: its two neighbours (a port whose neighbours are taken fails to start, coded).
    const fixed = await server({ ...LOOSE, port: p3, natProbe: false });
    const port = fixed.address().port;
    await fixed.close();
    const s = await server({ ...LOOSE, port }).catch((e: { code: string }) => e);
    if ('probePorts' in s) {
      cleanup.push(() => s.close());
      expect(s.probePorts).toEqual([port + 1, port + 2]);
    } else {
      expect(s.code).toBe('EADDRINUSE'); // a neighbour was taken meanwhile: refused with the errno
    }
    await expect(server({ ...LOOSE, natProbe: { ports: [1, 1] } })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(server({ ...LOOSE, natProbe: 'yes' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });
});
