/**
 * The bus, the directory and the shared limits of three nodes (startCluster) on one real redis-server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ClusterKeyspace, NodeDirectory, RelayAdmission, RemotePeer, SharedLimits, connectRedis, deriveClusterKeys } from '../../lib/cluster/index.js';
import { seal } from '../../lib/cluster/crypto.js';
import { encodeEnvelope } from '../../lib/cluster/envelope.js';
import { newCounters } from '../../lib/cluster/stats.js';
import { Leases } from '../../lib/cluster/leases.js';
import type { Message } from '../../lib/protocol/index.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { SECRET, startNode, waitFor } from '../helpers/cluster.js';
import type { TestNode } from '../helpers/cluster.js';

const ping = (seq: number): Message => ({ type: 'ping', seq, rttUs: 0 });
const keys = new ClusterKeyspace('tp');
const busKey = deriveClusterKeys(SECRET).bus;

describe.skipIf(redisMissing)(`cluster bus (${redisMissing ?? 'real redis-server'})`, () => {
  let server: TestRedis;
  let a: TestNode;
  let b: TestNode;
  let c: TestNode;
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

  beforeAll(async () => {
    server = await TestRedis.start();
    [a, b, c] = (await Promise.all(['n1', 'n2', 'n3'].map((id) => startNode(server.url, id)))) as [TestNode, TestNode, TestNode];
    await a.cluster.claimPeer('alice');
    await b.cluster.claimPeer('bob');
  });
  afterAll(async () => {
    await Promise.all([a, b, c].map((n) => n?.cluster.close()));
    await server?.stop();
  });

  it('delivers to the one node that owns the target, and says when nobody does', async () => {
    expect(await c.cluster.bus.deliver('bob', ping(7))).toBe(true);
    await waitFor(() => b.delivered.length === 1, 5000, 'delivery to n2');
    await settle();
    expect(b.delivered[0]).toEqual({ peerId: 'bob', msg: ping(7), fromNode: 'n3' });
    expect(a.delivered).toHaveLength(0);
    expect(c.delivered).toHaveLength(0);
    expect(await c.cluster.bus.deliver('nobody', ping(1))).toBe(false);
    expect(c.cluster.stats().bus.undeliverable).toBe(1);
  });

  it('a remote peer proxy sends through the bus and reports a peer online nowhere, once', async () => {
    const gone: string[] = [];
    const bob = new RemotePeer('bob', c.cluster.transitKey('bob'), c.cluster.bus, (p) => gone.push(p.id));
    const n = b.delivered.length;
    expect(bob.send(ping(21))).toBe(true);
    await waitFor(() => b.delivered.length === n + 1, 5000, 'delivery through the proxy');
    const nobody = new RemotePeer('nobody', c.cluster.transitKey('nobody'), c.cluster.bus, (p) => gone.push(p.id));
    nobody.send(ping(1));
    nobody.send(ping(2));
    await waitFor(() => gone.length > 0, 5000, 'onGone');
    await settle();
    expect(gone).toEqual(['nobody']);
    expect(nobody.send(ping(3))).toBe(false);
  });

  it('routes a peer message back to the node running the coordination', async () => {
    const coordId = Buffer.alloc(16, 3);
    expect(await b.cluster.bus.toCoordinator('n1', coordId, 'bob', ping(9))).toBe(true);
    await waitFor(() => a.toCoordinator.length === 1, 5000, 'the reply on n1');
    await settle();
    expect(a.toCoordinator[0]).toEqual({ coordId: Uint8Array.from(coordId), fromPeer: 'bob', msg: ping(9), fromNode: 'n2' });
    expect(b.toCoordinator).toHaveLength(0);
    expect(c.toCoordinator).toHaveLength(0);
  });

  it('drops forged, malformed, stale, replayed and misrouted messages with a log line and a count, never a crash', async () => {
    const before = b.cluster.stats().bus.dropped;
    const chan = keys.peerChannel('bob');
    const raw = (buf: Buffer): Promise<number> => b.cluster.bus.publishRaw(chan, buf);
    // A node with another secret (same Redis, same key prefix) cannot inject.
    const intruder = await startNode(server.url, 'intruder', { secret: 'not-the-cluster-secret-42' });
    expect(await intruder.cluster.bus.deliver('bob', ping(66))).toBe(true); // Redis carried it...
    await raw(Buffer.from('garbage'));
    await raw(seal(busKey, chan, Buffer.from([1, 2, 3]))); // opens, but is no envelope
    await raw(seal(busKey, chan, encodeEnvelope({ kind: 'deliver', fromNode: 'n3', peerId: 'bob', msg: ping(2) }, Date.now() - 120_000)));
    const once = seal(busKey, chan, encodeEnvelope({ kind: 'deliver', fromNode: 'n3', peerId: 'bob', msg: ping(3) }));
    await raw(once);
    await raw(once);
    await raw(seal(busKey, chan, encodeEnvelope({ kind: 'deliver', fromNode: 'n3', peerId: 'alice', msg: ping(4) })));
    // A frame of an unknown type inside a valid envelope.
    const env = encodeEnvelope({ kind: 'deliver', fromNode: 'n3', peerId: 'bob', msg: ping(5) });
    env[env.length - 11] = 0xee; // the frame's type byte: a ping frame is header (6) + seq (4) + rttUs (4), type at offset 3
    await raw(seal(busKey, chan, env));
    await waitFor(() => b.cluster.stats().bus.dropped.unroutable > before.unroutable, 5000, 'the drops');
    await settle();
    const d = b.cluster.stats().bus.dropped;
    expect(d.forged - before.forged).toBe(2);
    expect(d.malformed - before.malformed).toBe(2);
    expect(d.stale - before.stale).toBe(1);
    expect(d.replayed - before.replayed).toBe(1);
    expect(d.unroutable - before.unroutable).toBe(1);
    // Only the one valid message got through.
    expect(b.delivered.map((x) => x.msg)).toContainEqual(ping(3));
    expect(b.delivered.map((x) => x.msg)).not.toContainEqual(ping(66));
    expect(b.logs.some((l) => l.startsWith('warn cluster: dropped a forged message'))).toBe(true);
    // The intruder's node record does not open here either: it never joins the directory.
    await b.cluster.directory.beat();
    expect(b.cluster.directory.node('intruder')).toBeUndefined();
    expect(b.cluster.stats().nodesRejected).toBeGreaterThan(0);
    await intruder.cluster.close();
  });

  it('a claim on another node makes the old owner let the peer go at once', async () => {
    await a.cluster.claimPeer('roamer');
    const { epoch } = await c.cluster.claimPeer('roamer');
    await waitFor(() => a.lost.some((l) => l.peerId === 'roamer'), 5000, 'n1 to learn it lost roamer');
    expect(a.lost.find((l) => l.peerId === 'roamer')).toEqual({ peerId: 'roamer', reason: 'stolen', by: { node: 'n3', epoch } });
    // Messages for roamer now reach n3 only.
    await a.cluster.bus.deliver('roamer', ping(11));
    await waitFor(() => c.delivered.some((x) => x.peerId === 'roamer'), 5000, 'delivery to n3');
    await settle();
    expect(a.delivered.some((x) => x.peerId === 'roamer')).toBe(false);
  });

  it('directory: lists the live nodes, finds the owner of a peer, and marks a silent node down', async () => {
    await a.cluster.directory.beat();
    expect(a.cluster.directory.nodes().map((n) => n.nodeId).sort()).toEqual(['n1', 'n2', 'n3']);
    const owner = await a.cluster.directory.ownerOf('bob');
    expect(owner).toMatchObject({ nodeId: 'n2', advertise: b.cluster.advertise });
    expect(await a.cluster.directory.ownerOf('nobody')).toBeUndefined();
    const st = a.cluster.stats();
    expect(st.clusterPeers).toBeGreaterThanOrEqual(3);
    expect(st.nodesUp).toBe(3);
    expect(st.redis.connected).toBe(true);
    expect(Number.isFinite(st.redis.rttMs) && st.redis.rttMs > 0).toBe(true);
    expect(st.leases.held).toBe(a.cluster.leases.size);
    expect(st.leases.claims).toBeGreaterThanOrEqual(2);
    expect(st.bus.received).toBeGreaterThan(0);
    a.cluster.recordCrossNodeDial('ok');
    a.cluster.recordCrossNodeDial('ERR_PEER_OFFLINE');
    a.cluster.recordCrossNodeDial('ok');
    expect(a.cluster.stats().crossNodeDials).toEqual({ ok: 2, ERR_PEER_OFFLINE: 1 });
    // A node that beats once and then falls silent (a crash) is down after two missed heartbeats.
    const redis = await connectRedis(server.url);
    const ghostLeases = new Leases({ redis, keys, nodeId: 'ghost', counters: newCounters(), log: () => undefined });
    const ghost = new NodeDirectory({
      redis, keys, storeKey: deriveClusterKeys(SECRET).store, nodeId: 'ghost', advertise: '127.0.0.1:1',
      leases: ghostLeases,
      heartbeatMs: 200, load: () => ({ peers: 0, relaySessions: 0 }), counters: newCounters(), log: () => undefined,
    });
    await ghost.beat();
    await waitFor(() => a.cluster.directory.node('ghost') !== undefined, 5000, 'ghost up');
    await waitFor(() => a.down.includes('ghost'), 5000, 'ghost down');
    ghostLeases.close();
    redis.disconnect();
  });

  it('a node id in use by a live node is refused; the id of a node that just died is not', async () => {
    await expect(startNode(server.url, 'n2')).rejects.toMatchObject({ code: 'ERR_CLUSTER_NODE_ID_TAKEN' });
    await a.cluster.directory.beat();
    expect(a.cluster.directory.node('n2')?.instance).toBe(b.cluster.directory.instance); // n2's record left alone
    // A process that beat once and died (SIGKILL): its successor with the same id starts at once.
    const redis = await connectRedis(server.url);
    const deadLeases = new Leases({ redis, keys, nodeId: 'phoenix', counters: newCounters(), log: () => undefined });
    await new NodeDirectory({
      redis, keys, storeKey: deriveClusterKeys(SECRET).store, nodeId: 'phoenix', advertise: '127.0.0.1:1',
      leases: deadLeases, heartbeatMs: 200, load: () => ({ peers: 0, relaySessions: 0 }), counters: newCounters(), log: () => undefined,
    }).beat();
    deadLeases.close();
    redis.disconnect();
    const successor = await startNode(server.url, 'phoenix');
    expect(successor.cluster.directory.node('phoenix')?.instance).toBe(successor.cluster.directory.instance);
    await successor.cluster.close();
  });

  it('relay admission: per-peer and per-IP limits across nodes; a refusal holds nothing', async () => {
    const limits = { maxSessionsPerPeer: 2, maxSessionsPerIp: 3 };
    const [ra, rb] = [new RelayAdmission(a.cluster.limits, limits), new RelayAdmission(b.cluster.limits, limits)];
    const side = (sessionId: string, peerId: string, ip: string) => ({ sessionId, side: 'a' as const, peerId, ip });
    expect(await ra.admit(side('s1', 'carl', '198.51.100.1'))).toBe('ok');
    expect(await rb.admit(side('s2', 'carl', '198.51.100.1'))).toBe('ok');
    expect(await rb.admit(side('s3', 'carl', '198.51.100.2'))).toBe('peer'); // carl's third session, on another node
    expect(await ra.admit(side('s4', 'dana', '198.51.100.1'))).toBe('ok');
    expect(await rb.admit(side('s5', 'erin', '198.51.100.1'))).toBe('ip'); // the IP's fourth
    expect(await a.cluster.limits.count('relay-peer', 'erin')).toBe(0); // the refused side holds no peer slot
    await ra.release(side('s1', 'carl', '198.51.100.1'));
    await ra.release(side('s1', 'carl', '198.51.100.1')); // idempotent
    expect(await rb.admit(side('s5', 'erin', '198.51.100.1'))).toBe('ok');
    expect(await rb.admit(side('s3', 'carl', '198.51.100.2'))).toBe('ok');
  });

  it('shared limits hold across nodes, and a dead node\'s slots lapse', async () => {
    const [la, lb] = [a.cluster.limits, b.cluster.limits];
    expect(await la.take('relay-ip', '192.0.2.1', 's1', 2)).toBe(true);
    expect(await lb.take('relay-ip', '192.0.2.1', 's2', 2)).toBe(true);
    expect(await lb.take('relay-ip', '192.0.2.1', 's3', 2)).toBe(false);
    expect(await la.count('relay-ip', '192.0.2.1')).toBe(2);
    await la.release('relay-ip', '192.0.2.1', 's1');
    expect(await lb.take('relay-ip', '192.0.2.1', 's3', 2)).toBe(true);
    expect(await la.hit('conn-ip', '192.0.2.1', 60_000)).toBe(1);
    expect(await lb.hit('conn-ip', '192.0.2.1', 60_000)).toBe(2);
    // A node that dies stops renewing: its slots lapse after their lifetime.
    const redis = await connectRedis(server.url);
    const dying = new SharedLimits({ redis, keys, nodeId: 'dying', ttlMs: 200 });
    expect(await dying.take('relay-peer', 'p', 'x', 1)).toBe(true);
    expect(await la.take('relay-peer', 'p', 'y', 1)).toBe(false);
    dying.close();
    await waitFor(async () => (await la.count('relay-peer', 'p')) === 0, 5000, 'the slot to lapse');
    expect(await la.take('relay-peer', 'p', 'y', 1)).toBe(true);
    redis.disconnect();
  });
});
