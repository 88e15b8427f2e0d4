/**
 * Relay limits per peer and per IP hold cluster-wide (RelayAdmission wired into the relay's join path): two server
 * nodes on one real redis-server, relayed sessions on both nodes. A side over its cluster-wide limit is refused with
 * the relay's own stable code even though its node's own count is under the limit; a slot released when a session
 * ends is usable again; nothing is left pending, active or held in Redis afterwards.
 */
import type { Socket } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import type { RelayLimits } from '../../lib/relay/limits.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import type { UpgradableStream } from '../../lib/upgrade.js';
import { openFds } from '../helpers/fds.js';
import { until } from '../helpers/poll.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { LOOSE, addr, server } from '../helpers/rendezvous.js';

const SECRET = 'cluster-relay-limits-secret-0123456789';

/** Echoes every accepted stream, and ends it when the dialer does (so that its relayed session ends). */
function echo(p: Peer): void {
  p.on('connection', (socket: Socket | UpgradableStream) => {
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('end', () => socket.end());
  });
}

async function roundTrip(socket: Socket | UpgradableStream, text: string): Promise<string> {
  socket.on('error', () => undefined); // a relayed stream ends with a RST when its session ends
  socket.write(text);
  return new Promise((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
}

/** Two cluster nodes with `limits` for their relays, and the peers a test connects (all closed afterwards). */
function twoNodes(prefix: string, limits: Partial<RelayLimits>) {
  const ctx = { redis: undefined as unknown as TestRedis, nodes: [] as RendezvousServer[], peers: [] as Peer[] };
  beforeAll(async () => {
    ctx.redis = await TestRedis.start();
    ctx.nodes = await Promise.all(
      [`${prefix}1`, `${prefix}2`].map((nodeId) =>
        server({ ...LOOSE, secret: SECRET, relay: { limits }, cluster: { redis: ctx.redis.url, nodeId, heartbeatMs: 200, leaseTtlMs: 3000 } }),
      ),
    );
  });
  afterAll(async () => {
    for (const p of ctx.peers) await p.close();
    for (const s of ctx.nodes) await s.close();
    await ctx.redis?.stop();
  });
  const connect = async (node: number, id: string): Promise<Peer> => {
    const p = await Peer.connect({ server: addr(ctx.nodes[node]!), id, secret: SECRET });
    ctx.peers.push(p);
    echo(p);
    return p;
  };
  /** Slots held in Redis for `kind`/`key`, as node 0 counts them. */
  const held = (kind: 'relay-peer' | 'relay-ip', key: string): Promise<number> => ctx.nodes[0]!.cluster!.cluster.limits.count(kind, key);
  /** Nothing pending or pumping on any node's relay, and no slot left in Redis. */
  const drained = async (): Promise<boolean> =>
    ctx.nodes.every((n) => n.stats().relay!.pending === 0 && n.stats().relay!.active === 0) && (await held('relay-ip', '127.0.0.1')) === 0;
  return { ctx, connect, held, drained };
}

describe.skipIf(redisMissing)(`relay limits across nodes (${redisMissing ?? 'real redis-server'})`, () => {
  describe('per peer', () => {
    const { ctx, connect, held, drained } = twoNodes('lp', { maxSessionsPerPeer: 2 });

    it("refuses a peer's session over its limit on a node whose own count is under it, then admits once a slot is free", async () => {
      const alice = await connect(0, 'alice');
      const dave = await connect(1, 'dave');
      await connect(1, 'carl');
      const fds = openFds(); // the peers' control connections are open; dials add relay connections
      // Each relayed session runs on the dialer's node: carl's first side on node 1, the second on node 2.
      const s1 = await alice.dial('carl', { strategy: 'relay' });
      expect(await roundTrip(s1.socket, 'one')).toBe('one');
      const s2 = await dave.dial('carl', { strategy: 'relay' });
      expect(await roundTrip(s2.socket, 'two')).toBe('two');
      expect(await held('relay-peer', 'carl')).toBe(2);
      expect(ctx.nodes[1]!.stats().relay!.active).toBe(1); // node 2's own count for carl is 1 of 2

      // The dial fails as when one node's own limit refuses: the relay's code names the limit.
      await expect(dave.dial('carl', { strategy: 'relay', timeoutMs: 5000 })).rejects.toMatchObject({
        code: 'ERR_RELAY_FAILED',
        message: expect.stringContaining('carl: error (ERR_RELAY_LIMIT_PEER'),
      });
      expect(ctx.nodes[1]!.stats().relay!.rejected.ERR_RELAY_LIMIT_PEER).toBeGreaterThanOrEqual(1);
      expect(await held('relay-peer', 'carl')).toBe(2); // the refusal holds nothing

      s1.socket.end(); // its end gives carl's slot back (on node 1)
      expect(await until(async () => (await held('relay-peer', 'carl')) === 1)).toBe(true);
      const s3 = await dave.dial('carl', { strategy: 'relay' });
      expect(await roundTrip(s3.socket, 'three')).toBe('three');
      s2.socket.end();
      s3.socket.end();
      expect(await until(drained)).toBe(true);
      expect(await until(() => openFds() <= fds)).toBe(true); // refused joins left no socket behind
    });
  });

  describe('per IP', () => {
    const { ctx, connect, held, drained } = twoNodes('li', { maxSessionsPerIp: 3 });

    it('counts relay connections from one address on every node, and frees them when sessions end', async () => {
      const alice = await connect(0, 'alice');
      const bob = await connect(1, 'bob');
      const fds = openFds();
      const s1 = await alice.dial('bob', { strategy: 'relay' }); // two connections from 127.0.0.1, on node 1
      expect(await roundTrip(s1.socket, 'one')).toBe('one');
      expect(await held('relay-ip', '127.0.0.1')).toBe(2);
      // On node 2 the address holds nothing yet, but its second connection would be the fourth in the cluster.
      await expect(bob.dial('alice', { strategy: 'relay', timeoutMs: 5000 })).rejects.toMatchObject({
        code: 'ERR_RELAY_FAILED',
        message: expect.stringContaining('ERR_RELAY_LIMIT_IP'),
      });
      expect(ctx.nodes[1]!.stats().relay!.rejected.ERR_RELAY_LIMIT_IP).toBeGreaterThanOrEqual(1);
      expect(await until(async () => (await held('relay-ip', '127.0.0.1')) === 2)).toBe(true);

      s1.socket.end();
      expect(await until(async () => (await held('relay-ip', '127.0.0.1')) === 0)).toBe(true);
      const s2 = await bob.dial('alice', { strategy: 'relay' });
      expect(await roundTrip(s2.socket, 'two')).toBe('two');
      s2.socket.end();
      expect(await until(drained)).toBe(true);
      expect(await until(() => openFds() <= fds)).toBe(true);
    });
  });
});
