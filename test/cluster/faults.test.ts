/**
 * Redis faults with real processes: redis-server killed and started again on the same port, Redis gone for
 * longer than a lease, Redis unreachable at start; and bad cluster options.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { startCluster } from '../../lib/cluster/index.js';
import type { ClusterHooks } from '../../lib/cluster/index.js';
import { TestRedis, freePort, redisMissing } from '../helpers/redis.js';
import { SECRET, startNode, waitFor } from '../helpers/cluster.js';
import type { TestNode } from '../helpers/cluster.js';

const hooks: ClusterHooks = { deliver: () => undefined, toCoordinator: () => undefined, leaseLost: () => undefined };

describe.skipIf(redisMissing)(`cluster faults (${redisMissing ?? 'real redis-server'})`, () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  const nodes = async (url: string, ids: string[], leaseTtlMs: number): Promise<TestNode[]> => {
    const out = await Promise.all(ids.map((id) => startNode(url, id, { leaseTtlMs })));
    cleanup.push(async () => void (await Promise.all(out.map((n) => n.cluster.close()))));
    return out;
  };

  it('Redis restarts: leases are re-asserted and the bus works again, nothing restarted', async () => {
    const redis = await TestRedis.start();
    cleanup.push(() => redis.stop());
    const [a, b] = await nodes(redis.url, ['r1', 'r2'], 10_000);
    const { epoch } = await a!.cluster.claimPeer('alice');
    await b!.cluster.claimPeer('bob');

    await redis.kill(); // every key is gone: no persistence
    await waitFor(() => !a!.cluster.stats().redis.connected, 5000, 'r1 to notice');
    await expect(a!.cluster.claimPeer('carol')).rejects.toMatchObject({ code: 'ERR_CLUSTER_UNAVAILABLE' });
    expect(a!.cluster.leases.epochOf('alice')).toBe(epoch); // a short outage: still ours

    await redis.start();
    await waitFor(async () => (await b!.cluster.leases.owner('alice').catch(() => undefined))?.node === 'r1', 10_000, 'alice re-asserted');
    expect(await b!.cluster.leases.owner('alice')).toEqual({ node: 'r1', epoch });
    await waitFor(async () => (await a!.cluster.leases.owner('bob').catch(() => undefined))?.node === 'r2', 10_000, 'bob re-asserted');
    expect(a!.cluster.stats().leases.restored).toBeGreaterThanOrEqual(1);
    expect(a!.cluster.stats().redis.reconnects).toBeGreaterThanOrEqual(1);
    expect(a!.logs.some((l) => l.includes('re-asserting leases'))).toBe(true);
    // Both subscriptions are back: each node reaches the other's peer.
    await waitFor(async () => await b!.cluster.bus.deliver('alice', { type: 'ping', seq: 1, rttUs: 0 }), 10_000, 'delivery to r1');
    await waitFor(() => a!.delivered.some((d) => d.peerId === 'alice'), 5000, 'r1 to receive');
    await waitFor(async () => await a!.cluster.bus.deliver('bob', { type: 'ping', seq: 2, rttUs: 0 }), 10_000, 'delivery to r2');
    await waitFor(() => b!.delivered.some((d) => d.peerId === 'bob'), 5000, 'r2 to receive');
    expect(a!.lost).toEqual([]);
    // New claims work again.
    await a!.cluster.claimPeer('carol');
  });

  it('Redis gone for longer than the lease: the node stops claiming the id and says so', async () => {
    const redis = await TestRedis.start();
    cleanup.push(() => redis.stop());
    const [a] = await nodes(redis.url, ['x1'], 600);
    await a!.cluster.claimPeer('dave');
    await redis.kill();
    await waitFor(() => a!.lost.length > 0, 10_000, 'the lease to be given up');
    expect(a!.lost).toEqual([{ peerId: 'dave', reason: 'expired', by: undefined }]);
    expect(a!.logs.some((l) => /lease of dave not renewed .* no longer claiming it/.test(l))).toBe(true);
    expect(a!.cluster.stats().leases.lostExpired).toBe(1);
    expect(a!.cluster.leases.epochOf('dave')).toBeUndefined();
    // When Redis is back the node does not re-assert what it gave up.
    await redis.start();
    await waitFor(() => a!.cluster.stats().redis.reconnects >= 1, 10_000, 'reconnect');
    await a!.cluster.leases.renewAll();
    expect(await a!.cluster.leases.owner('dave')).toBeUndefined();
  });

  it('Redis unreachable at start: a coded error naming the address', async () => {
    const port = await freePort();
    await expect(
      startCluster({ redis: `redis://127.0.0.1:${port}`, advertise: '127.0.0.1:7770', secret: SECRET, connectTimeoutMs: 500 }, hooks),
    ).rejects.toMatchObject({ code: 'ERR_CLUSTER_UNAVAILABLE', message: expect.stringContaining(`127.0.0.1:${port}`) });
  });

  it('the password of a Redis URL never appears in the error', async () => {
    const port = await freePort();
    const err = await startCluster(
      { redis: `redis://:hunter2secret@127.0.0.1:${port}`, advertise: '127.0.0.1:7770', secret: SECRET, connectTimeoutMs: 300 },
      hooks,
    ).catch((e: Error) => e);
    expect(String((err as Error).message)).not.toContain('hunter2secret');
  });

  it('bad options are refused with the option named', async () => {
    const base = { redis: 'redis://127.0.0.1:1', advertise: '127.0.0.1:7770', secret: SECRET };
    const cases: [Record<string, unknown>, string, string][] = [
      [{ redis: 'http://x' }, 'ERR_INVALID_ARG_TYPE', 'options.cluster.redis'],
      [{ redis: 42 }, 'ERR_INVALID_ARG_TYPE', 'options.cluster.redis'],
      [{ nodeId: 'has space' }, 'ERR_INVALID_ARG_VALUE', 'options.cluster.nodeId'],
      [{ nodeId: 'a|b' }, 'ERR_INVALID_ARG_VALUE', 'options.cluster.nodeId'],
      [{ advertise: 'nohost' }, 'ERR_INVALID_ARG_VALUE', 'options.cluster.advertise'],
      [{ advertise: 'h:99999' }, 'ERR_INVALID_ARG_VALUE', 'options.cluster.advertise'],
      [{ advertise: 7 }, 'ERR_INVALID_ARG_TYPE', 'options.cluster.advertise'],
      [{ secret: 'short' }, 'ERR_INVALID_ARG_VALUE', 'options.secret'],
      [{ secret: undefined }, 'ERR_INVALID_ARG_TYPE', 'options.secret'],
      [{ keyPrefix: 'a b' }, 'ERR_INVALID_ARG_VALUE', 'options.cluster.keyPrefix'],
      [{ leaseTtlMs: 10 }, 'ERR_OUT_OF_RANGE', 'options.cluster.leaseTtlMs'],
      [{ heartbeatMs: 1.5 }, 'ERR_OUT_OF_RANGE', 'options.cluster.heartbeatMs'],
      [{ onlineTtlMs: '1' }, 'ERR_INVALID_ARG_TYPE', 'options.cluster.onlineTtlMs'],
      [{ connectTimeoutMs: -1 }, 'ERR_OUT_OF_RANGE', 'options.cluster.connectTimeoutMs'],
    ];
    for (const [patch, code, name] of cases) {
      await expect(startCluster({ ...base, ...patch } as never, hooks)).rejects.toMatchObject({
        code,
        message: expect.stringContaining(name),
      });
    }
  });
});
