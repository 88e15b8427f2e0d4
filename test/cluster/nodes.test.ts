/**
 * Rendezvous servers in cluster mode (`startServer({ cluster })`) on one real redis-server: an id is taken
 * cluster-wide, a peer on node 1 dials a peer on node 2 with every strategy (`direct`, `direct-first`, `relay` on
 * the dialer's node, `relay-first` and its upgrade to direct), stats show the cluster, close() gives the ids back.
 * Three node processes, one SIGKILLed: its peers (given a server list) register with the next node and are
 * dialled there, while a relayed session between the surviving nodes goes on.
 */
import { fork } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import type { ConnectionInfo } from '../../lib/peer/types.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import { UpgradableStream } from '../../lib/upgrade.js';
import { drainHash } from '../helpers/net.js';
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

/**
 * Registers, for the enclosing describe, a redis-server and one in-process server node per id (the `secret` is
 * the server secret, or with `open` the cluster secret of open servers), and closes them and the peers the tests
 * push afterwards. Read `redis` and `nodes` inside tests: they are set by beforeAll.
 */
function clusterOf(ids: string[], { open = false } = {}) {
  const ctx = { redis: undefined as unknown as TestRedis, nodes: [] as RendezvousServer[], peers: [] as Peer[] };
  beforeAll(async () => {
    ctx.redis = await TestRedis.start();
    const cluster = (nodeId: string) => ({ redis: ctx.redis.url, nodeId, heartbeatMs: 200, leaseTtlMs: 3000 });
    ctx.nodes = await Promise.all(
      ids.map((id) => server(open ? { ...LOOSE, cluster: { ...cluster(id), secret: SECRET } } : { ...LOOSE, secret: SECRET, cluster: cluster(id) })),
    );
  });
  afterAll(async () => {
    for (const p of ctx.peers) await p.close();
    for (const s of ctx.nodes) await s.close();
    await ctx.redis?.stop();
  });
  return ctx;
}

describe.skipIf(redisMissing)(`server nodes in one cluster (${redisMissing ?? 'real redis-server'})`, () => {
  const ctx = clusterOf(['n1', 'n2']);
  const { peers } = ctx;

  it('refuses an invalid cluster option with a typed error naming it', async () => {
    await expect(server({ cluster: { redis: ctx.redis.url } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('options.cluster.secret') });
    await expect(server({ secret: SECRET, cluster: { redis: 'http://x' } })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_INVALID_ARG/) });
  });

  it('dials across nodes directly and through the relay', async () => {
    const alice = await Peer.connect({ server: addr(ctx.nodes[0]!), id: 'alice', secret: SECRET });
    const bob = await Peer.connect({ server: addr(ctx.nodes[1]!), id: 'bob', secret: SECRET });
    peers.push(alice, bob);
    const accepted: ConnectionInfo[] = [];
    echo(bob, accepted);

    // bob's node has published his warm mapping (lib/cluster/cards.ts): the dial from alice's node starts from
    // both warm ports, with no observe round, as it would on one node.
    expect(await until(async () => (await ctx.nodes[0]!.cluster!.cluster.peerCard('bob'))?.card.warm !== undefined)).toBe(true);
    const warmBefore = ctx.nodes[0]!.stats().totals.warmAttempts;
    const direct = await alice.dial('bob', { strategy: 'direct' });
    expect(direct).toMatchObject({ path: 'direct', peerId: 'bob' });
    expect(direct.timings.observeMs).toBe(0);
    expect(ctx.nodes[0]!.stats().totals.warmAttempts).toBe(warmBefore + 1);
    expect(await roundTrip(direct.socket, 'hello direct')).toBe('hello direct');
    direct.socket.destroy();

    const relayed = await alice.dial('bob', { strategy: 'relay' });
    expect(relayed).toMatchObject({ path: 'relay', peerId: 'bob' });
    expect(await roundTrip(relayed.socket, 'hello relay')).toBe('hello relay');
    relayed.socket.destroy();
    expect(accepted.map((i) => i.path)).toEqual(['direct', 'relay']);
    // The relayed session ran on the dialer's node.
    expect(ctx.nodes[0]!.stats().relay?.started).toBe(1);
    expect(ctx.nodes[1]!.stats().relay?.started).toBe(0);

    // The other way round too.
    echo(alice, []);
    const back = await bob.dial('alice', { strategy: 'direct' });
    expect(back).toMatchObject({ path: 'direct', peerId: 'alice' });
    expect(await roundTrip(back.socket, 'hello back')).toBe('hello back');
    back.socket.destroy();

    expect(await until(() => ctx.nodes[0]!.stats().cluster!.nodesUp === 2)).toBe(true);
    const s1 = ctx.nodes[0]!.stats().cluster!;
    expect(s1.peersLocal).toBe(1);
    expect(Object.values(s1.crossNodeDials).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
  });

  it('a dial planned on an outdated card (the target registered again) keeps the target out of that attempt and connects on fresh ports', async () => {
    const gail = await Peer.connect({ server: addr(ctx.nodes[0]!), id: 'gail', secret: SECRET });
    let hank = await Peer.connect({ server: addr(ctx.nodes[1]!), id: 'hank', secret: SECRET });
    peers.push(gail);
    const cluster1 = ctx.nodes[0]!.cluster!.cluster;
    expect(await until(async () => (await cluster1.peerCard('hank'))?.card.warm !== undefined)).toBe(true);
    const old = cluster1.peerCard('hank');
    expect(old).not.toBeInstanceOf(Promise); // gail's node keeps the card it read
    // hank registers again: another control connection (another warm port) under a higher lease epoch.
    await hank.close();
    hank = await Peer.connect({ server: addr(ctx.nodes[1]!), id: 'hank', secret: SECRET });
    peers.push(hank);
    echo(hank, []);
    const staleBefore = ctx.nodes[1]!.stats().cluster!.cards.stale;
    const attempts: { attempt: number; outcome: string }[] = [];
    gail.on('attempt', (a) => attempts.push({ attempt: a.attempt, outcome: a.outcome }));

    const r = await gail.dial('hank', { strategy: 'direct' });
    expect(r.path).toBe('direct');
    expect(await roundTrip(r.socket, 'after the stale card')).toBe('after the stale card');
    r.socket.destroy();
    // Attempt 1 was planned on the old card: hank's node kept hank out of it, attempt 2 observed fresh ports.
    expect(ctx.nodes[1]!.stats().cluster!.cards.stale).toBe(staleBefore + 1);
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2]);
    expect(attempts[0]!.outcome).not.toBe('ok');
    expect(attempts[1]!.outcome).toBe('ok');
    expect(r.timings.observeMs).toBeGreaterThan(0);
    // gail's node dropped the old card: its next lookup reads hank's current one.
    const fresh = await cluster1.peerCard('hank');
    expect(fresh?.epoch).not.toBe((old as { epoch: string }).epoch);
    await Promise.all([gail.close(), hank.close()]); // the tests below count the nodes' peers
  });

  it("dials across nodes with direct-first, and relay-first moves to direct with every byte intact both ways", async () => {
    const erin = await Peer.connect({ server: addr(ctx.nodes[0]!), id: 'erin', secret: SECRET });
    const fred = await Peer.connect({ server: addr(ctx.nodes[1]!), id: 'fred', secret: SECRET });
    peers.push(erin, fred);
    const accepted: { socket: Socket | UpgradableStream; info: ConnectionInfo }[] = [];
    fred.on('connection', (socket: Socket | UpgradableStream, info: ConnectionInfo) => {
      socket.on('error', () => undefined);
      accepted.push({ socket, info });
    });

    const first = await erin.dial('fred', { strategy: 'direct-first' });
    expect(first.path).toBe('direct'); // loopback punches
    expect(await until(() => accepted.length === 1)).toBe(true);
    accepted[0]!.socket.on('data', (d: Buffer) => accepted[0]!.socket.write(d));
    expect(await roundTrip(first.socket, 'direct-first')).toBe('direct-first');
    first.socket.destroy();

    const upgrades: string[] = [];
    erin.on('upgrade', (e) => upgrades.push(`erin:${e.role}`));
    fred.on('upgrade', (e) => upgrades.push(`fred:${e.role}`));
    const relayedBefore = ctx.nodes[0]!.stats().relay!.started;
    const r = await erin.dial('fred', { strategy: 'relay-first' });
    expect(r.path).toBe('relay');
    expect(await until(() => accepted.length === 2)).toBe(true);
    const [mine, theirs] = [r.socket as UpgradableStream, accepted[1]!.socket as UpgradableStream];
    expect(theirs).toBeInstanceOf(UpgradableStream);
    expect(ctx.nodes[0]!.stats().relay!.started).toBe(relayedBefore + 1); // relayed on the dialer's node
    // Each side sends some bytes while relayed, the rest once the stream is direct, then ends.
    const atFred = drainHash(theirs);
    const atErin = drainHash(mine);
    const send = async (s: UpgradableStream): Promise<string> => {
      const [early, late] = [randomBytes(300_000), randomBytes(300_000)];
      s.write(early);
      await until(() => s.path === 'direct', 20_000);
      s.end(late);
      return createHash('sha256').update(early).update(late).digest('hex');
    };
    const [sentErin, sentFred] = await Promise.all([send(mine), send(theirs)]);
    expect(await atFred).toEqual({ hash: sentErin, bytes: 600_000 });
    expect(await atErin).toEqual({ hash: sentFred, bytes: 600_000 });
    expect(upgrades.sort()).toEqual(['erin:initiator', 'fred:responder']);
    // How much crossed the relay depends on how soon the upgrade lands (from both warm ports it can beat the first
    // write); whatever went that way arrived that way, and the rest went direct.
    expect(theirs.bytesReadFromRelay).toBe(mine.bytesWrittenToRelay);
    expect(mine.bytesWrittenToRelay).toBeLessThan(600_000);
    mine.destroy();
    theirs.destroy();
    await erin.close(); // the next test counts the nodes' peers
    await fred.close();
  });

  it('a dial to an id online nowhere fails with ERR_PEER_OFFLINE', async () => {
    const carol = await Peer.connect({ server: addr(ctx.nodes[0]!), id: 'carol', secret: SECRET });
    peers.push(carol);
    await expect(carol.dial('nobody', { strategy: 'direct', timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ERR_PEER_OFFLINE' });
  });

  it('an id registered on another node replaces the first (ERR_REPLACED); a session that ends gives its lease back', async () => {
    const first = await Peer.connect({ server: addr(ctx.nodes[0]!), id: 'dave', secret: SECRET, reconnect: false });
    const closed = new Promise<Error | undefined>((resolve) => first.once('close', resolve));
    const second = await Peer.connect({ server: addr(ctx.nodes[1]!), id: 'dave', secret: SECRET, reconnect: false });
    peers.push(first, second);
    expect(await closed).toMatchObject({ code: 'ERR_REPLACED' });
    expect(await until(() => ctx.nodes[0]!.stats().peers === 2)).toBe(true); // alice, carol
    await second.close();
    expect(await until(() => ctx.nodes[1]!.stats().cluster!.leases.held === 1)).toBe(true); // bob only
  });
});

describe.skipIf(redisMissing)(`open server nodes (${redisMissing ?? 'real redis-server'})`, () => {
  const ctx = clusterOf(['o1', 'o2'], { open: true });
  const { peers } = ctx;

  it('an id held on one node is ERR_ID_TAKEN on the other', async () => {
    const holder = await Peer.connect({ server: addr(ctx.nodes[0]!), id: 'svc' });
    peers.push(holder);
    await expect(Peer.connect({ server: addr(ctx.nodes[1]!), id: 'svc', reconnect: false })).rejects.toMatchObject({ code: 'ERR_ID_TAKEN' });
  });
});

const CHILD = fileURLToPath(new URL('../helpers/cluster-server-child.mjs', import.meta.url));

/** A server node in its own process; resolves once it has joined. `stats()` asks it over IPC. */
interface NodeProcess {
  proc: ChildProcess;
  port: number;
  addr: string;
  stats(): Promise<ReturnType<RendezvousServer['stats']>>;
}

function spawnServer(url: string, nodeId: string): Promise<NodeProcess> {
  const proc = fork(CHILD, [url, nodeId, SECRET], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const stats = (): Promise<ReturnType<RendezvousServer['stats']>> =>
    new Promise((resolve) => {
      proc.once('message', (m) => resolve(m as ReturnType<RendezvousServer['stats']>));
      proc.send('stats');
    });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`node ${nodeId} exited with ${code}`)));
    createInterface({ input: proc.stdout! }).once('line', (l) => {
      const { port } = JSON.parse(l) as { port: number };
      resolve({ proc, port, addr: `127.0.0.1:${port}`, stats });
    });
  });
}

describe.skipIf(redisMissing)(`three server node processes, one SIGKILLed (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let victim: NodeProcess;
  let nodes: NodeProcess[] = [];
  const peers: Peer[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    const all = await Promise.all(['victim', 'k2', 'k3'].map((nodeId) => spawnServer(redis.url, nodeId)));
    victim = all[0]!;
    nodes = all.slice(1);
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const n of [victim, ...nodes]) if (n && n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL');
    await redis?.stop();
  });

  it('its peers re-register on the next server of their list and are dialled there; a relayed session elsewhere goes on', async () => {
    const alice = await Peer.connect({
      server: [victim.addr, nodes[1]!.addr],
      id: 'alice',
      secret: SECRET,
      reconnect: { minDelayMs: 50, maxDelayMs: 500 },
    });
    const bob = await Peer.connect({ server: nodes[0]!.addr, id: 'bob', secret: SECRET });
    const carol = await Peer.connect({ server: nodes[1]!.addr, id: 'carol', secret: SECRET });
    peers.push(alice, bob, carol);
    echo(alice, []);
    echo(carol, []);
    expect(alice.server?.port).toBe(victim.port);
    // A relayed session between the two surviving nodes' peers (on bob's node k2), open across the crash.
    const bystander = await bob.dial('carol', { strategy: 'relay' });
    bystander.socket.on('error', () => undefined);
    expect(await roundTrip(bystander.socket, 'relayed before')).toBe('relayed before');

    // Across processes: bob (node k2) dials alice (node victim).
    const before = await bob.dial('alice', { strategy: 'direct' });
    expect(await roundTrip(before.socket, 'before')).toBe('before');

    const exited = new Promise((r) => victim.proc.once('exit', r));
    victim.proc.kill('SIGKILL');
    await exited;
    // The direct stream punched before needs no node; the relayed one between surviving nodes is not disturbed.
    expect(await roundTrip(before.socket, 'still there')).toBe('still there');
    before.socket.destroy();
    expect(await roundTrip(bystander.socket, 'relayed still')).toBe('relayed still');

    expect(await until(() => alice.online && alice.server?.port === nodes[1]!.port, 10_000)).toBe(true);
    const after = await bob.dial('alice', { strategy: 'direct' });
    expect(await roundTrip(after.socket, 'after')).toBe('after');
    after.socket.destroy();
    const relayed = await bob.dial('alice', { strategy: 'relay' });
    expect(await roundTrip(relayed.socket, 'relayed')).toBe('relayed');
    relayed.socket.destroy();
    expect(await until(async () => (await nodes[0]!.stats()).cluster!.nodesUp === 2, 10_000)).toBe(true); // victim is down
    expect(await roundTrip(bystander.socket, 'relayed after')).toBe('relayed after');
    bystander.socket.destroy();
  });
});
