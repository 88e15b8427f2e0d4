/**
 * Rendezvous servers in cluster mode (`startServer({ cluster })`) on one real redis-server: an id is taken
 * cluster-wide, a peer on node 1 dials a peer on node 2 directly (loopback) and through the relay (on the
 * dialer's node), stats show the cluster, close() gives the ids back. A node process SIGKILLed: its peers (given
 * a server list) register with the next node and are dialled there.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

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

const CHILD = fileURLToPath(new URL('../helpers/cluster-server-child.mjs', import.meta.url));

/** A server node in its own process; resolves with its port once it has joined. */
function spawnServer(url: string, nodeId: string): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, [CHILD, url, nodeId, SECRET], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`node ${nodeId} exited with ${code}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve({ proc, port: (JSON.parse(l) as { port: number }).port }));
  });
}

describe.skipIf(redisMissing)(`a server node process SIGKILLed (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let victim: { proc: ChildProcess; port: number };
  let nodes: RendezvousServer[] = [];
  const peers: Peer[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    victim = await spawnServer(redis.url, 'victim');
    nodes = await Promise.all(
      ['k2', 'k3'].map((nodeId) => server({ ...LOOSE, secret: SECRET, cluster: { redis: redis.url, nodeId, heartbeatMs: 200, leaseTtlMs: 3000 } })),
    );
  });
  afterAll(async () => {
    if (victim && victim.proc.exitCode === null && victim.proc.signalCode === null) victim.proc.kill('SIGKILL');
    for (const p of peers) await p.close();
    for (const s of nodes) await s.close();
    await redis?.stop();
  });

  it('its peers re-register on the next server of their list and are dialled there', async () => {
    const alice = await Peer.connect({
      server: [`127.0.0.1:${victim.port}`, addr(nodes[1]!)],
      id: 'alice',
      secret: SECRET,
      reconnect: { minDelayMs: 50, maxDelayMs: 500 },
    });
    const bob = await Peer.connect({ server: addr(nodes[0]!), id: 'bob', secret: SECRET });
    peers.push(alice, bob);
    echo(alice, []);
    expect(alice.server?.port).toBe(victim.port);

    // Across processes: bob (node k2, in this process) dials alice (node victim, its own process).
    const before = await bob.dial('alice', { strategy: 'direct' });
    expect(await roundTrip(before.socket, 'before')).toBe('before');

    const exited = new Promise((r) => victim.proc.once('exit', r));
    victim.proc.kill('SIGKILL');
    await exited;
    // The direct stream punched before needs no node.
    expect(await roundTrip(before.socket, 'still there')).toBe('still there');
    before.socket.destroy();

    expect(await until(() => alice.online && alice.server?.port === nodes[1]!.address().port, 10_000)).toBe(true);
    const after = await bob.dial('alice', { strategy: 'direct' });
    expect(await roundTrip(after.socket, 'after')).toBe('after');
    after.socket.destroy();
    const relayed = await bob.dial('alice', { strategy: 'relay' });
    expect(await roundTrip(relayed.socket, 'relayed')).toBe('relayed');
    relayed.socket.destroy();
    expect(await until(() => nodes[0]!.stats().cluster!.nodesUp === 2, 10_000)).toBe(true); // victim is down
  });
});
