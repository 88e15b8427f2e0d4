/**
 * Two open rendezvous servers (no secret) sharing the cluster's Redis registry: an id held on one cannot be taken
 * on the other without its token (ERR_ID_TAKEN, as on one server), and its holder's token works on both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { startNode } from '../helpers/cluster.js';
import type { TestNode } from '../helpers/cluster.js';
import { addr, server } from '../helpers/rendezvous.js';

describe.skipIf(redisMissing)(`open servers sharing the Redis registry (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let nodes: TestNode[] = [];
  let servers: RendezvousServer[] = [];
  const peers: Peer[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    nodes = await Promise.all(['s1', 's2'].map((id) => startNode(redis.url, id)));
    servers = await Promise.all(nodes.map((n) => server({ registry: n.cluster.registry })));
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const s of servers) await s.close();
    for (const n of nodes) await n.cluster.close();
    await redis?.stop();
  });

  it('ERR_ID_TAKEN holds across servers; the token works on either', async () => {
    const holder = await Peer.connect({ server: addr(servers[0]!), id: 'shared-id' });
    peers.push(holder);
    expect(holder.token).toBeInstanceOf(Uint8Array);
    await expect(Peer.connect({ server: addr(servers[1]!), id: 'shared-id', reconnect: false })).rejects.toMatchObject({
      code: 'ERR_ID_TAKEN',
    });
    await holder.close();
    const moved = await Peer.connect({ server: addr(servers[1]!), id: 'shared-id', token: holder.token! });
    peers.push(moved);
    expect(moved.online).toBe(true);
    // Two fresh ids registered at once on the two servers: exactly one wins.
    const both = await Promise.allSettled(
      servers.map((s) => Peer.connect({ server: addr(s), id: 'contended', reconnect: false })),
    );
    const won = both.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of won) peers.push((r as PromiseFulfilledResult<Peer>).value);
    expect(both.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'ERR_ID_TAKEN' } });
  });
});
