/**
 * Rendezvous servers in cluster mode (`startServer({ cluster })`) on one real redis-server: an id is taken
 * cluster-wide, a peer on node 1 dials a peer on node 2 directly (loopback) and through the relay (on the
 * dialer's node), stats show the cluster, close() gives the ids back.
 */
import type { Socket } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import type { ConnectionInfo } from '../../lib/peer/types.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import type { UpgradableStream } from '../../lib/upgrade.js';
import { until } from '../helpers/poll.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { LOOSE, addr, server } from '../helpers/rendezvous.js';

const SECRET = 'cluster-nodes-test-secret-0123456789';

/** Echoes one line back on every accepted stream. */
function echo(p: Peer, accepted: ConnectionInfo[]): void {
  p.on('connection', (socket: Socket | UpgradableStream, info: ConnectionInfo) => {
    accepted.push(info);
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => socket.write(d));
  });
}

async function roundTrip(socket: Socket | UpgradableStream, text: string): Promise<string> {
  socket.write(text);
  return new Promise((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
}

describe.skipIf(redisMissing)(`server nodes in one cluster (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let nodes: RendezvousServer[] = [];
  const peers: Peer[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    nodes = await Promise.all(
      ['n1', 'n2'].map((nodeId) =>
        server({ ...LOOSE, secret: SECRET, cluster: { redis: redis.url, nodeId, heartbeatMs: 200, leaseTtlMs: 3000 } }),
      ),
    );
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const s of nodes) await s.close();
    await redis?.stop();
  });

  it('refuses an invalid cluster option with a typed error naming it', async () => {
    await expect(server({ cluster: { redis: redis.url } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('options.cluster.secret') });
    await expect(server({ secret: SECRET, cluster: { redis: 'http://x' } })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_INVALID_ARG/) });
  });

  it('dials across nodes directly and through the relay', async () => {
    const alice = await Peer.connect({ server: addr(nodes[0]!), id: 'alice', secret: SECRET });
    const bob = await Peer.connect({ server: addr(nodes[1]!), id: 'bob', secret: SECRET });
    peers.push(alice, bob);
    const accepted: ConnectionInfo[] = [];
    echo(bob, accepted);

    const direct = await alice.dial('bob', { strategy: 'direct' });
    expect(direct).toMatchObject({ path: 'direct', peerId: 'bob' });
    expect(await roundTrip(direct.socket, 'hello direct')).toBe('hello direct');
    direct.socket.destroy();

    const relayed = await alice.dial('bob', { strategy: 'relay' });
    expect(relayed).toMatchObject({ path: 'relay', peerId: 'bob' });
    expect(await roundTrip(relayed.socket, 'hello relay')).toBe('hello relay');
    relayed.socket.destroy();
    expect(accepted.map((i) => i.path)).toEqual(['direct', 'relay']);
    // The relayed session ran on the dialer's node.
    expect(nodes[0]!.stats().relay?.started).toBe(1);
    expect(nodes[1]!.stats().relay?.started).toBe(0);

    // The other way round too.
    echo(alice, []);
    const back = await bob.dial('alice', { strategy: 'direct' });
    expect(back).toMatchObject({ path: 'direct', peerId: 'alice' });
    expect(await roundTrip(back.socket, 'hello back')).toBe('hello back');
    back.socket.destroy();

    expect(await until(() => nodes[0]!.stats().cluster!.nodesUp === 2)).toBe(true);
    const s1 = nodes[0]!.stats().cluster!;
    expect(s1.peersLocal).toBe(1);
    expect(Object.values(s1.crossNodeDials).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
  });

  it('a dial to an id online nowhere fails with ERR_PEER_OFFLINE', async () => {
    const carol = await Peer.connect({ server: addr(nodes[0]!), id: 'carol', secret: SECRET });
    peers.push(carol);
    await expect(carol.dial('nobody', { strategy: 'direct', timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ERR_PEER_OFFLINE' });
  });

  it('an id registered on another node replaces the first (ERR_REPLACED); a session that ends gives its lease back', async () => {
    const first = await Peer.connect({ server: addr(nodes[0]!), id: 'dave', secret: SECRET, reconnect: false });
    const closed = new Promise<Error | undefined>((resolve) => first.once('close', resolve));
    const second = await Peer.connect({ server: addr(nodes[1]!), id: 'dave', secret: SECRET, reconnect: false });
    peers.push(first, second);
    expect(await closed).toMatchObject({ code: 'ERR_REPLACED' });
    expect(await until(() => nodes[0]!.stats().peers === 2)).toBe(true); // alice, carol
    await second.close();
    expect(await until(() => nodes[1]!.stats().cluster!.leases.held === 1)).toBe(true); // bob only
  });
});

describe.skipIf(redisMissing)(`open server nodes (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let nodes: RendezvousServer[] = [];
  const peers: Peer[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    nodes = await Promise.all(
      ['o1', 'o2'].map((nodeId) => server({ ...LOOSE, cluster: { redis: redis.url, nodeId, secret: SECRET, heartbeatMs: 200, leaseTtlMs: 3000 } })),
    );
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const s of nodes) await s.close();
    await redis?.stop();
  });

  it('an id held on one node is ERR_ID_TAKEN on the other', async () => {
    const holder = await Peer.connect({ server: addr(nodes[0]!), id: 'svc' });
    peers.push(holder);
    await expect(Peer.connect({ server: addr(nodes[1]!), id: 'svc', reconnect: false })).rejects.toMatchObject({ code: 'ERR_ID_TAKEN' });
  });
});
