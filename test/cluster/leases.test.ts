/**
 * Ownership leases and the Redis registry against a real redis-server; two ioredis clients play two nodes.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ClusterKeyspace, Leases, RedisRegistry, connectRedis, deriveClusterKeys, outranks } from '../../lib/cluster/index.js';
import type { ClusterCounters } from '../../lib/cluster/index.js';
import { newCounters } from '../../lib/cluster/stats.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { SECRET, waitFor } from '../helpers/cluster.js';

const keys = new ClusterKeyspace('t1');

describe.skipIf(redisMissing)(`leases and registry (${redisMissing ?? 'real redis-server'})`, () => {
  let server: TestRedis;
  const clients: Redis[] = [];
  const client = async (): Promise<Redis> => {
    const c = await connectRedis(server.url);
    clients.push(c);
    return c;
  };
  const leases = async (nodeId: string, ttlMs = 3000): Promise<{ l: Leases; counters: ClusterCounters; logs: string[] }> => {
    const counters = newCounters();
    const logs: string[] = [];
    const l = new Leases({ redis: await client(), keys, nodeId, ttlMs, counters, log: (lv, m) => logs.push(`${lv} ${m}`) });
    return { l, counters, logs };
  };

  beforeAll(async () => {
    server = await TestRedis.start();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });

  it('acquires a free id, and nx refuses an id another node holds', async () => {
    const a = await leases('a');
    const b = await leases('b');
    const got = await a.l.claim('p-acquire', 'nx');
    expect(got.previous).toBeUndefined();
    expect(await a.l.owner('p-acquire')).toEqual({ node: 'a', epoch: got.epoch });
    await expect(b.l.claim('p-acquire', 'nx')).rejects.toMatchObject({ code: 'ERR_ID_TAKEN' });
    expect(a.l.epochOf('p-acquire')).toBe(got.epoch);
    a.l.close();
    b.l.close();
  });

  it('renews a lease past its lifetime', async () => {
    const a = await leases('a', 300);
    await a.l.claim('p-renew');
    await new Promise((r) => setTimeout(r, 900)); // three lifetimes
    expect((await a.l.owner('p-renew'))?.node).toBe('a');
    expect(a.counters.leases.renewals).toBeGreaterThan(0);
    a.l.close();
  });

  it('a claim on another node steals with a higher epoch; the old owner learns it lost', async () => {
    const a = await leases('a');
    const b = await leases('b');
    const first = await a.l.claim('p-steal');
    const second = await b.l.claim('p-steal');
    expect(outranks(second.epoch, first.epoch)).toBe(true);
    expect(second.previous).toEqual({ node: 'a', epoch: first.epoch });
    const lost: unknown[] = [];
    a.l.on('lost', (id, reason, by) => lost.push([id, reason, by]));
    // A notice with a lower epoch than ours changes nothing...
    a.l.superseded('p-steal', { node: 'b', epoch: '1' });
    expect(a.l.epochOf('p-steal')).toBe(first.epoch);
    // ...the renewal finds the higher epoch and gives the lease up.
    await a.l.renewAll();
    expect(lost).toEqual([['p-steal', 'stolen', { node: 'b', epoch: second.epoch }]]);
    expect(a.l.epochOf('p-steal')).toBeUndefined();
    expect(a.counters.leases.lostStolen).toBe(1);
    expect((await b.l.owner('p-steal'))?.node).toBe('b');
    a.l.close();
    b.l.close();
  });

  it('an older lease that came back (a failover) loses to our higher epoch', async () => {
    const a = await leases('a');
    const took: unknown[] = [];
    a.l.on('took', (id, prev) => took.push([id, prev]));
    const { epoch } = await a.l.claim('p-failover');
    const redis = await client();
    await redis.set(keys.lease('p-failover'), '5|b', 'PX', 3000);
    await a.l.renewAll();
    expect(await a.l.owner('p-failover')).toEqual({ node: 'a', epoch });
    expect(took).toEqual([['p-failover', { node: 'b', epoch: '5' }]]);
    a.l.close();
  });

  it('release deletes only our own lease', async () => {
    const a = await leases('a');
    const b = await leases('b');
    await a.l.claim('p-release');
    await b.l.claim('p-release');
    await a.l.release('p-release'); // a no longer holds it: b's lease stays
    expect((await b.l.owner('p-release'))?.node).toBe('b');
    await b.l.release('p-release');
    expect(await b.l.owner('p-release')).toBeUndefined();
    a.l.close();
    b.l.close();
  });

  it('a lease not renewed lapses, and the id can be taken with nx', async () => {
    const a = await leases('a', 200);
    await a.l.claim('p-lapse');
    a.l.close(); // stops renewing, as a dead node would
    const b = await leases('b');
    await waitFor(async () => (await b.l.owner('p-lapse')) === undefined, 5000, 'the lease to lapse');
    const got = await b.l.claim('p-lapse', 'nx');
    expect(got.previous).toBeUndefined();
    b.l.close();
  });

  it('registry: create is atomic across two nodes, tokens are sealed, reservations lapse', async () => {
    const store = deriveClusterKeys(SECRET).store;
    const r1 = new RedisRegistry({ redis: await client(), keys, storeKey: store });
    const r2 = new RedisRegistry({ redis: await client(), keys, storeKey: store });
    const tokens = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    for (let i = 0; i < 20; i++) {
      const id = `race-${i}`;
      const won = await Promise.all([
        r1.create(id, { token: tokens[0]!, expiresAt: null }),
        r2.create(id, { token: tokens[1]!, expiresAt: null }),
      ]);
      expect(won.filter(Boolean)).toHaveLength(1);
      const winner = won[0] ? tokens[0]! : tokens[1]!;
      expect(Buffer.from((await r2.get(id))!.token!)).toEqual(winner);
      expect(Buffer.from((await r1.get(id))!.token!)).toEqual(winner);
    }
    // The token is not readable in Redis.
    const raw = (await (await client()).getBuffer(keys.credential('race-0')))!;
    expect(raw.includes(Buffer.alloc(8, 1)) || raw.includes(Buffer.alloc(8, 2))).toBe(false);
    // A node with another secret cannot read (and does not treat the id as free).
    const foreign = new RedisRegistry({ redis: await client(), keys, storeKey: deriveClusterKeys('another-secret-0123456789').store });
    await expect(foreign.get('race-0')).rejects.toMatchObject({ code: 'ERR_CLUSTER_RECORD' });
    // Reservations lapse; update and delete work.
    await r1.update('race-1', { token: tokens[0]!, expiresAt: Date.now() + 150 });
    await waitFor(async () => (await r2.get('race-1')) === undefined, 5000, 'the reservation to lapse');
    expect(await r2.create('race-1', { token: tokens[1]!, expiresAt: null })).toBe(true);
    await r2.delete('race-1');
    expect(await r1.get('race-1')).toBeUndefined();
    for (const r of [r1, r2, foreign]) r.close();
  });

  it('registry: online records are written back after Redis lost them', async () => {
    const store = deriveClusterKeys(SECRET).store;
    const redis = await client();
    const r = new RedisRegistry({ redis, keys, storeKey: store });
    await r.create('wb', { token: Buffer.alloc(32, 9), expiresAt: null });
    await redis.del(keys.credential('wb'));
    await r.refresh();
    expect(Buffer.from((await r.get('wb'))!.token!)).toEqual(Buffer.alloc(32, 9));
    r.close();
  });
});
