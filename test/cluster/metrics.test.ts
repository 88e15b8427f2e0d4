/**
 * A cluster node's Prometheus series (lib/metrics.ts, `tcp_punch_cluster_*`) against two server nodes on a real
 * redis-server: local and cluster peers, nodes up, leases, Redis round trip, cross-node dials by outcome, and none
 * of these series on a server without `cluster`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createMetricsRegistry, serverMetrics } from '../../lib/metrics.js';
import { Peer } from '../../lib/peer/peer.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import { until } from '../helpers/poll.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { LOOSE, addr, server } from '../helpers/rendezvous.js';

const SECRET = 'cluster-metrics-secret-0123456789';

/** `name{labels} value` lines of a scrape, as a map from the series to its value. */
async function scrape(s: RendezvousServer): Promise<Map<string, number>> {
  const registry = createMetricsRegistry();
  serverMetrics(registry, s);
  const out = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe.skipIf(redisMissing)(`cluster metrics (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let nodes: RendezvousServer[] = [];
  const peers: Peer[] = [];
  beforeAll(async () => {
    redis = await TestRedis.start();
    nodes = await Promise.all(
      ['m1', 'm2'].map((nodeId) => server({ ...LOOSE, secret: SECRET, cluster: { redis: redis.url, nodeId, heartbeatMs: 200, leaseTtlMs: 3000 } })),
    );
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const s of nodes) await s.close();
    await redis?.stop();
  });

  it("exports each node's cluster counters, cross-node dials by outcome", async () => {
    const alice = await Peer.connect({ server: addr(nodes[0]!), id: 'alice', secret: SECRET });
    const bob = await Peer.connect({ server: addr(nodes[1]!), id: 'bob', secret: SECRET });
    peers.push(alice, bob);
    bob.on('connection', (socket) => {
      socket.on('error', () => undefined);
      socket.end();
    });
    (await alice.dial('bob', { strategy: 'direct' })).socket.destroy();
    await expect(alice.dial('nobody', { strategy: 'direct', timeoutMs: 3000 })).rejects.toMatchObject({ code: 'ERR_PEER_OFFLINE' });
    // Heartbeats carry the peer counts and measure the Redis round trip.
    expect(await until(async () => (await scrape(nodes[0]!)).get('tcp_punch_cluster_peers_online') === 2, 5000)).toBe(true);
    const m = await scrape(nodes[0]!);
    expect(m.get('tcp_punch_cluster_peers_local')).toBe(1);
    expect(m.get('tcp_punch_cluster_nodes_up')).toBe(2);
    expect(m.get('tcp_punch_cluster_leases_held')).toBe(1);
    expect(m.get('tcp_punch_cluster_redis_connected')).toBe(1);
    expect(m.get('tcp_punch_cluster_redis_rtt_seconds')).toBeGreaterThan(0);
    // The least of the recent round trips: never above the last one.
    expect(m.get('tcp_punch_cluster_redis_rtt_min_seconds')).toBeGreaterThan(0);
    expect(m.get('tcp_punch_cluster_redis_rtt_min_seconds')).toBeLessThanOrEqual(m.get('tcp_punch_cluster_redis_rtt_seconds')!);
    expect(m.get('tcp_punch_cluster_cross_node_dials_total{outcome="ok"}')).toBe(1);
    expect(m.get('tcp_punch_cluster_cross_node_dials_total{outcome="ERR_PEER_OFFLINE"}')).toBe(1);
    // Both dials looked a card up in Redis (none cached yet); the cache answered none.
    expect(m.get('tcp_punch_cluster_card_lookups_total{outcome="miss"}')).toBe(2);
    expect(m.get('tcp_punch_cluster_card_lookups_total{outcome="hit"}')).toBe(0);
    expect(m.get('tcp_punch_cluster_lease_events_total{event="claim"}')).toBe(1);
    expect(m.get('tcp_punch_cluster_lease_events_total{event="lost_expired"}')).toBe(0);
    expect(m.get('tcp_punch_cluster_bus_messages_total{outcome="sent"}')).toBeGreaterThan(0);
    expect(m.get('tcp_punch_cluster_bus_dropped_total{reason="forged"}')).toBe(0);
    // Renewals run every third of the lease.
    expect(await until(async () => ((await scrape(nodes[0]!)).get('tcp_punch_cluster_lease_events_total{event="renewal"}') ?? 0) > 0, 5000)).toBe(true);
  });

  it('a server without cluster has no cluster series', async () => {
    const plain = await server({ ...LOOSE, secret: SECRET });
    try {
      expect([...(await scrape(plain)).keys()].filter((k) => k.startsWith('tcp_punch_cluster_'))).toEqual([]);
    } finally {
      await plain.close();
    }
  });
});
