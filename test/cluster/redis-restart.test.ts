/**
 * Redis restarts under two server nodes (redis-server SIGKILLed, no persistence, started again on its port): the
 * nodes keep their peers registered and serve same-node dials meanwhile (direct and relayed), re-assert their
 * leases when Redis is back, and cross-node dials work again with nothing restarted. The lease is longer than the
 * outage, so no peer is dropped. And Redis gone for longer than a lease: the node stops claiming the id, says so in
 * its log and closes that peer's control connection (ERR_CLUSTER_UNAVAILABLE); the peer registers again, with a
 * new lease, once Redis is back.
 */
import type { Socket } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import type { UpgradableStream } from '../../lib/upgrade.js';
import { until } from '../helpers/poll.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { LOOSE, addr, server } from '../helpers/rendezvous.js';

const SECRET = 'cluster-redis-restart-secret-0123456789';

function echo(p: Peer): void {
  p.on('connection', (socket: Socket | UpgradableStream) => {
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => socket.write(d));
  });
}

/** Dials `to` with `strategy` and checks one round trip; resolves false instead of throwing. */
async function works(from: Peer, to: string, strategy: 'direct' | 'relay'): Promise<boolean> {
  try {
    const r = await from.dial(to, { strategy, timeoutMs: 3000 });
    r.socket.on('error', () => undefined);
    r.socket.write('ping');
    const back = await new Promise<string>((resolve) => r.socket.once('data', (d: Buffer) => resolve(d.toString())));
    r.socket.destroy();
    return back === 'ping';
  } catch {
    return false;
  }
}

describe.skipIf(redisMissing)(`Redis restarts under server nodes (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let nodes: RendezvousServer[] = [];
  const peers: Peer[] = [];
  const logs: string[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    nodes = await Promise.all(
      ['rr1', 'rr2'].map((nodeId) =>
        server({
          ...LOOSE,
          secret: SECRET,
          cluster: { redis: redis.url, nodeId, heartbeatMs: 200, leaseTtlMs: 15_000, log: (l, m) => logs.push(`${nodeId} ${l} ${m}`) },
        }),
      ),
    );
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const s of nodes) await s.close();
    await redis?.stop();
  });

  it('same-node dials go on during the outage; leases and cross-node dials come back without restarting anything', async () => {
    const connect = async (node: number, id: string): Promise<Peer> => {
      const p = await Peer.connect({ server: addr(nodes[node]!), id, secret: SECRET });
      peers.push(p);
      echo(p);
      return p;
    };
    const alice = await connect(0, 'alice');
    await connect(0, 'bob');
    await connect(1, 'carl');
    const closed: string[] = [];
    for (const p of peers) p.on('close', () => closed.push(p.id));
    expect(await works(alice, 'carl', 'direct')).toBe(true);
    const epoch = nodes[0]!.cluster!.cluster.leases.epochOf('alice');

    await redis.kill();
    expect(await until(() => nodes.every((n) => !n.stats().cluster!.redis.connected), 5000)).toBe(true);
    // Same-node dials need no Redis.
    expect(await works(alice, 'bob', 'direct')).toBe(true);
    expect(await works(alice, 'bob', 'relay')).toBe(true);
    expect(nodes[0]!.stats().peers).toBe(2);

    await redis.start();
    expect(await until(() => nodes.every((n) => n.stats().cluster!.redis.reconnects >= 1), 10_000)).toBe(true);
    // Redis forgot everything; each node writes back the leases it holds, with the epochs it had.
    expect(await until(async () => (await nodes[1]!.cluster!.cluster.leases.owner('alice').catch(() => undefined))?.epoch === epoch, 10_000)).toBe(true);
    expect(await until(async () => (await nodes[0]!.cluster!.cluster.leases.owner('carl').catch(() => undefined))?.node === 'rr2', 10_000)).toBe(true);
    expect(nodes[0]!.stats().cluster!.leases.restored).toBeGreaterThanOrEqual(2);
    // Cross-node dials work again once the subscriptions are back (ioredis resubscribes by itself).
    expect(await until(() => works(alice, 'carl', 'direct'), 15_000)).toBe(true);
    expect(await works(alice, 'carl', 'relay')).toBe(true);
    expect(logs.some((l) => l.startsWith('rr1 warn cluster: lost the connection to Redis'))).toBe(true);
    expect(logs.some((l) => l.startsWith('rr1 info cluster: Redis is back'))).toBe(true);
    expect(closed).toEqual([]); // nobody was dropped
    expect(nodes.map((n) => n.stats().peers)).toEqual([2, 1]);
  });
});

describe.skipIf(redisMissing)(`Redis gone for longer than a lease under a server node (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let node: RendezvousServer;
  let peer: Peer | undefined;
  const logs: string[] = [];
  beforeAll(async () => {
    redis = await TestRedis.start();
    node = await server({ ...LOOSE, secret: SECRET, cluster: { redis: redis.url, nodeId: 'lx1', heartbeatMs: 200, leaseTtlMs: 600, log: (l, m) => logs.push(`${l} ${m}`) } });
  });
  afterAll(async () => {
    await peer?.close();
    await node?.close();
    await redis?.stop();
  });

  it('the node lets the peer go, logs it, and the peer registers again once Redis is back', async () => {
    peer = await Peer.connect({ server: addr(node), id: 'dora', secret: SECRET, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
    const offline: (string | undefined)[] = [];
    peer.on('offline', (err) => offline.push((err as { code?: string } | undefined)?.code));
    const epoch = node.cluster!.cluster.leases.epochOf('dora');
    await redis.kill();
    expect(await until(() => offline.length > 0, 10_000)).toBe(true);
    expect(offline[0]).toBe('ERR_CLUSTER_UNAVAILABLE');
    expect(logs.some((l) => /^warn cluster: lease of dora not renewed .* no longer claiming it/.test(l))).toBe(true);
    expect(node.stats().cluster!.leases.lostExpired).toBe(1);
    expect(node.stats().peers).toBe(0); // registrations are refused while Redis is away
    expect(peer.online).toBe(false);

    await redis.start();
    expect(await until(() => peer!.online, 15_000)).toBe(true);
    expect(node.stats().peers).toBe(1);
    const owner = await node.cluster!.cluster.leases.owner('dora');
    expect(owner?.node).toBe('lx1');
    expect(owner?.epoch).not.toBe(epoch); // a new claim, not the lease given up
  });
});
