/**
 * Peer cards (lib/cluster/cards.ts) on a real redis-server: the owner's card reaches another node, a card of an
 * earlier registration (lower lease epoch) is never served, a node with another secret cannot read or forge one,
 * a card is rewritten before it lapses, and a coordinating node reuses the cards it read until told otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ClusterKeyspace, connectRedis } from '../../lib/cluster/index.js';
import type { PeerCard } from '../../lib/cluster/index.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { startNode, waitFor, type TestNode } from '../helpers/cluster.js';

const card = (port: number): PeerCard => ({
  warm: { public: { host: '198.51.100.7', port }, private: [{ host: '10.0.0.7', port }], mapping: 'independent', filtering: 'unknown' },
  rttMs: 12.5,
});

describe.skipIf(redisMissing)(`peer cards (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  const nodes: TestNode[] = [];
  const node = async (id: string, extra = {}): Promise<TestNode> => {
    const n = await startNode(redis.url, id, extra);
    nodes.push(n);
    return n;
  };
  beforeAll(async () => {
    redis = await TestRedis.start();
  });
  afterAll(async () => {
    for (const n of nodes) await n.cluster.close();
    await redis?.stop();
  });
  /** What Redis holds for `id` now, past the node's cache. */
  const read = async (n: TestNode, id: string): Promise<PeerCard | undefined> => {
    n.cluster.forgetCard(id);
    return (await n.cluster.peerCard(id))?.card;
  };

  it("serves the owner's card to another node, and only for the owner's current lease", async () => {
    const [a, b] = [await node('a'), await node('b')];
    // Not the owner yet: nothing is published.
    await a.cluster.describePeer('carol', card(4000));
    expect(await read(b, 'carol')).toBeUndefined();

    await a.cluster.claimPeer('carol');
    await a.cluster.describePeer('carol', card(4001));
    expect(await read(b, 'carol')).toEqual(card(4001));

    // carol registers again on b (a new connection, a new mapping, a higher epoch): a's card is stale until b
    // publishes its own, and never served meanwhile.
    await b.cluster.claimPeer('carol');
    expect(await read(a, 'carol')).toBeUndefined();
    await b.cluster.describePeer('carol', card(4002));
    expect(await read(a, 'carol')).toEqual(card(4002));
    // The former owner cannot write over it any more.
    await a.cluster.describePeer('carol', card(4003));
    expect(await read(a, 'carol')).toEqual(card(4002));

    await b.cluster.releasePeer('carol');
    expect(await read(a, 'carol')).toBeUndefined();
  });

  it('a card written with another secret does not open, and a forged one is ignored', async () => {
    const [a, stranger] = [await node('a2'), await node('s', { secret: 'another-cluster-secret-0123456789' })];
    await stranger.cluster.claimPeer('dave');
    await stranger.cluster.describePeer('dave', card(5000));
    expect(await read(a, 'dave')).toBeUndefined();
    const r = await connectRedis(redis.url);
    try {
      await r.set(new ClusterKeyspace().card('dave'), Buffer.from('{"epoch":"1","card":{"rttMs":1}}'));
      expect(await read(a, 'dave')).toBeUndefined();
    } finally {
      r.disconnect();
    }
  });

  it('rewrites its own cards before they lapse', async () => {
    const a = await node('a3', { onlineTtlMs: 1000 });
    await a.cluster.claimPeer('erin');
    await a.cluster.describePeer('erin', card(6000));
    await new Promise((r) => setTimeout(r, 2500));
    expect(await read(a, 'erin')).toEqual(card(6000));
  });

  it('reuses a card it read until the owner reports it stale, the peer goes, or its node goes down', async () => {
    const [owner, reader] = [await node('c1'), await node('c2')];
    const { epoch } = await owner.cluster.claimPeer('fred');
    await owner.cluster.describePeer('fred', card(7000));
    const stats = () => reader.cluster.stats().cards;
    const s0 = stats();
    const first = reader.cluster.peerCard('fred');
    expect(first).toBeInstanceOf(Promise); // read from Redis
    expect(await first).toEqual({ epoch, node: 'c1', card: card(7000) });
    expect(reader.cluster.peerCard('fred')).toEqual({ epoch, node: 'c1', card: card(7000) }); // at once, from the cache
    expect(stats()).toMatchObject({ misses: s0.misses + 1, hits: s0.hits + 1 });
    // The owner publishes another card: the cache still says the old one (a coord planned on it carries its epoch,
    // and the owner checks that) until it is dropped.
    await owner.cluster.describePeer('fred', card(7001));
    expect(reader.cluster.peerCard('fred')).toMatchObject({ card: card(7000) });
    reader.cluster.forgetCard('fred');
    expect(await reader.cluster.peerCard('fred')).toMatchObject({ card: card(7001) });
    // The owner's node goes down: the reader drops the cards of its peers.
    expect(reader.cluster.peerCard('fred')).not.toBeInstanceOf(Promise);
    await owner.cluster.close();
    await waitFor(() => reader.down.includes('c1'), 10_000, 'c1 marked down');
    expect(reader.cluster.peerCard('fred')).toBeInstanceOf(Promise);
  });
});
