/**
 * The bridge between two nodes' servers (plain local-session tables here) over a real Redis: a coordination on
 * node A with a peer on node B — pair key re-wrapped for B's session, B's replies back to A as the same proxy
 * object, `end` forgets the route, a peer online nowhere and a node going down reach the coordinator as peerGone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ClusterBridge, startCluster } from '../../lib/cluster/index.js';
import type { BridgeServer, Cluster, LocalPeer, RemotePeer } from '../../lib/cluster/index.js';
import { wrapPairKey } from '../../lib/protocol/index.js';
import type { Message } from '../../lib/protocol/index.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { SECRET, waitFor } from '../helpers/cluster.js';

interface Side {
  cluster: Cluster;
  bridge: ClusterBridge;
  sessions: Map<string, LocalPeer & { got: Message[]; failed: string[] }>;
  coordinator: { coordId: Uint8Array; from: RemotePeer; msg: Message }[];
  gone: RemotePeer[];
  stale: { peerId: string; msg: Message; fromNode: string }[];
}

async function side(url: string, nodeId: string): Promise<Side> {
  const s = { sessions: new Map(), coordinator: [], gone: [], stale: [] } as unknown as Side;
  const server: BridgeServer = {
    local: (id) => s.sessions.get(id),
    coordinatorMessage: (coordId, from, msg) => s.coordinator.push({ coordId, from, msg }),
    remoteGone: (p) => s.gone.push(p),
    // What ClusterLink does: the coord without its folded attempt; anything else of that attempt withheld.
    stale: (peerId, msg, fromNode) => {
      s.stale.push({ peerId, msg, fromNode });
      return msg.type === 'coord' ? { ...msg, attempt: 0 } : undefined;
    },
  };
  s.bridge = new ClusterBridge(server);
  s.cluster = await startCluster({ redis: url, nodeId, advertise: '127.0.0.1:7770', secret: SECRET, heartbeatMs: 200 }, s.bridge.hooks());
  s.bridge.attach(s.cluster);
  return s;
}

function session(s: Side, id: string): LocalPeer & { got: Message[]; failed: string[] } {
  const p = { id, sessionKey: Buffer.alloc(32, id.length), got: [] as Message[], failed: [] as string[],
    send(m: Message) { p.got.push(m); return true; }, fail(code: string) { p.failed.push(code); } };
  s.sessions.set(id, p);
  return p;
}

describe.skipIf(redisMissing)(`cluster bridge (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let a: Side;
  let b: Side;
  beforeAll(async () => {
    redis = await TestRedis.start();
    [a, b] = await Promise.all([side(redis.url, 'A'), side(redis.url, 'B')]);
  });
  afterAll(async () => {
    await a?.cluster.close();
    await b?.cluster.close();
    await redis?.stop();
  });

  it('carries a coordination across nodes with the pair key re-wrapped and replies routed back', async () => {
    const bob = session(b, 'bob');
    await b.cluster.claimPeer('bob');
    const coordId = Buffer.alloc(16, 0x42);
    const pairKey = Buffer.alloc(32, 0x5a);
    const proxy = a.bridge.remote('bob');
    expect(a.bridge.remote('bob')).toBe(proxy); // one object per id
    // The coordinator wraps with the proxy's session key, as it does for a local session.
    proxy.send({
      type: 'coord', reqId: 0, coordId, peer: 'alice', role: 'responder', path: 'direct',
      pairKey: wrapPairKey(proxy.sessionKey, coordId, pairKey), timeoutMs: 5000, link: Buffer.alloc(16),
      attempt: 0, nonce: Buffer.alloc(16), mode: 'sync', route: 'public', remote: [], delayMs: 0, punchTimeoutMs: 0,
    });
    await waitFor(() => bob.got.length === 1, 5000, 'coord at bob');
    const got = bob.got[0] as Message & { pairKey: Uint8Array };
    expect(got.type).toBe('coord');
    expect(wrapPairKey(bob.sessionKey, coordId, got.pairKey)).toEqual(pairKey);
    // Bob's reply goes back to A and arrives as from the very proxy A's coordinator holds.
    expect(b.bridge.fromLocalPeer('bob', { type: 'result', coordId, attempt: 1, outcome: 'ok', detail: '', committed: false })).toBe(true);
    await waitFor(() => a.coordinator.length === 1, 5000, 'the result at A');
    expect(a.coordinator[0]!.from).toBe(proxy);
    expect(a.coordinator[0]!.msg).toMatchObject({ type: 'result', outcome: 'ok' });
    expect(proxy.node).toBe('B');
    // A message that is no coordination message, or of an unknown coordination, stays local.
    expect(b.bridge.fromLocalPeer('bob', { type: 'ping', seq: 1, rttUs: 0 })).toBe(false);
    expect(b.bridge.fromLocalPeer('bob', { type: 'cancel', coordId: Buffer.alloc(16, 1), code: 'ERR_X', message: '' })).toBe(false);
    // `end` forgets the route.
    proxy.send({ type: 'end', coordId, outcome: 'ok', code: 'OK', message: 'Connected' });
    await waitFor(() => bob.got.length === 2, 5000, 'end at bob');
    expect(b.bridge.fromLocalPeer('bob', { type: 'result', coordId, attempt: 1, outcome: 'ok', detail: '', committed: false })).toBe(false);
    // The relay's notices reach a peer wherever it is.
    a.bridge.notify('bob', { type: 'ping', seq: 9, rttUs: 0 });
    await waitFor(() => bob.got.length === 3, 5000, 'notice at bob');
  });

  it("checks a message planned on a card against the owner's lease epoch", async () => {
    const dora = session(b, 'dora');
    const { epoch } = await b.cluster.claimPeer('dora');
    const coordId = Buffer.alloc(16, 0x17);
    const proxy = a.bridge.remote('dora');
    const coord = (attempt: number): Message => ({
      type: 'coord', reqId: 0, coordId, peer: 'alice', role: 'responder', path: 'direct',
      pairKey: wrapPairKey(proxy.sessionKey, coordId, Buffer.alloc(32, 1)), timeoutMs: 5000, link: Buffer.alloc(16),
      attempt, nonce: Buffer.alloc(16), mode: 'sync', route: 'public', remote: [{ host: '192.0.2.1', port: 9 }], delayMs: 0, punchTimeoutMs: 500,
    });
    // Planned on the current card: delivered as sent.
    proxy.send(coord(1), epoch);
    await waitFor(() => dora.got.length === 1, 5000, 'coord at dora');
    expect(dora.got[0]).toMatchObject({ type: 'coord', attempt: 1 });
    expect(b.stale).toHaveLength(0);
    // Planned on an earlier registration's card: the server decides what the session gets instead.
    const before = b.cluster.stats().cards.stale;
    proxy.send(coord(1), String(BigInt(epoch) - 1n));
    await waitFor(() => dora.got.length === 2, 5000, 'the unfolded coord at dora');
    expect(dora.got[1]).toMatchObject({ type: 'coord', attempt: 0 });
    expect(b.stale).toMatchObject([{ peerId: 'dora', fromNode: 'A', msg: { type: 'coord', attempt: 1 } }]);
    expect(b.cluster.stats().cards.stale).toBe(before + 1);
    // Withheld: nothing reaches the session (a later message still does).
    proxy.send({ type: 'prepare', coordId, attempt: 2, token: Buffer.alloc(16), nonce: Buffer.alloc(16), port: 'warm' }, '0');
    proxy.send({ type: 'ping', seq: 3, rttUs: 0 });
    await waitFor(() => dora.got.length === 3, 5000, 'the ping at dora');
    expect(dora.got[2]).toMatchObject({ type: 'ping', seq: 3 });
    expect(b.stale).toHaveLength(2);
  });

  it('a peer online nowhere, a node down and a stolen lease reach the right side', async () => {
    const nobody = a.bridge.remote('nobody');
    nobody.send({ type: 'ping', seq: 1, rttUs: 0 });
    await waitFor(() => a.gone.includes(nobody), 5000, 'remoteGone');
    expect(a.bridge.remote('nobody')).not.toBe(nobody); // a fresh proxy next time
    // B's node goes down: A's coordinations with B's peers end.
    const carol = session(b, 'carol');
    await b.cluster.claimPeer('carol');
    const proxy = a.bridge.remote('carol');
    proxy.node = 'B';
    a.bridge.hooks().nodeDown!('B');
    expect(a.gone).toContain(proxy);
    // carol registers on A: B's session for carol is failed with ERR_REPLACED.
    session(a, 'carol');
    await a.cluster.claimPeer('carol');
    await waitFor(() => carol.failed.length > 0, 5000, 'the stale session to be failed');
    expect(carol.failed).toEqual(['ERR_REPLACED']);
  });
});
