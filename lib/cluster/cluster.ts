/**
 * One node's membership in a cluster: the Redis connections and the modules on them (leases, registry,
 * directory, bus, shared limits), wired together, behind the few calls the server makes.
 *
 * The server owns the control connections; the cluster tells it, through {@link ClusterHooks}, what arrived for
 * its peers and which peers it must let go. See docs/CLUSTER.md for the design and the integration contract.
 */
import { randomBytes } from 'node:crypto';

import type { Redis } from 'ioredis';

import { validateInteger } from '../endpoint.js';
import { TcpPunchError, invalidArgType, invalidArgValue } from '../errors.js';
import type { Message } from '../protocol/index.js';
import { ClusterBus } from './bus.js';
import { PeerCards } from './cards.js';
import type { CardRecord, PeerCard } from './cards.js';
import { deriveClusterKeys, transitKey } from './crypto.js';
import type { ClusterKeys } from './crypto.js';
import { NodeDirectory } from './directory.js';
import { ClusterKeyspace } from './keys.js';
import { Leases } from './leases.js';
import type { LeaseHolder, LeaseLossReason } from './leases.js';
import { connectRedis, redactRedis, validateRedisTarget } from './redis.js';
import type { RedisTarget } from './redis.js';
import { RedisRegistry } from './registry.js';
import { SharedLimits } from './shared-limits.js';
import { newCounters, snapshot } from './stats.js';
import type { ClusterCounters, ClusterLog } from './stats.js';

/** `cluster` options of startServer, plus what the server fills in. */
export interface ClusterOptions {
  /** The cluster's Redis: `redis://[:password@]host:port[/db]`, or ioredis options (Sentinel). */
  redis: RedisTarget;
  /** This node's id (1..64 of `A-Z a-z 0-9 . _ -`); default a random one. */
  nodeId?: string;
  /** `host:port` other nodes and peers reach this node at; the server defaults it to its listen address. */
  advertise: string;
  /** The server secret (at least 16 bytes): nodes with the same secret form one cluster. */
  secret: Uint8Array | string;
  /** Ownership lease lifetime; default 15000 ms. */
  leaseTtlMs?: number;
  /** Node heartbeat; default 2000 ms (down after 5 s). */
  heartbeatMs?: number;
  /** Lifetime of an online id record between refreshes (open servers); default 600000 ms. */
  onlineTtlMs?: number;
  /** Prefix of every Redis key and channel; default `tp`. Clusters sharing one Redis need different ones. */
  keyPrefix?: string;
  /** How long start-up waits for Redis; default 5000 ms. */
  connectTimeoutMs?: number;
  log?: ClusterLog;
}

/** What the cluster asks of the server. Each hook must not throw. */
export interface ClusterHooks {
  /**
   * A message for local peer `peerId` from the coordination running on `fromNode`; pass it to its session.
   * `stale`: it was planned on a card of an earlier registration of the peer (see lib/cluster/cards.ts).
   */
  deliver(peerId: string, msg: Message, fromNode: string, stale: boolean): void;
  /** A remote peer's message for coordination `coordId`, which runs here. */
  toCoordinator(coordId: Uint8Array, fromPeer: string, msg: Message, fromNode: string): void;
  /**
   * This node no longer owns `peerId`: close its control connection (`stolen`: `ERR_REPLACED`, the peer registered
   * on another node; `expired`: Redis was unreachable for longer than the lease, the peer should register again).
   */
  leaseLost(peerId: string, reason: LeaseLossReason, by: LeaseHolder | undefined): void;
  /** Node `nodeId` missed two heartbeats: end coordinations with its peers. */
  nodeDown?(nodeId: string): void;
  /** Load reported at each heartbeat. */
  load?(): { peers: number; relaySessions: number };
}

/** What a node id may be (it appears in lease values, after a `|`, and in key names). */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** A node of a cluster; create it with {@link startCluster}. */
export class Cluster {
  readonly nodeId: string;
  readonly advertise: string;
  readonly leases: Leases;
  /** The cluster-wide id registry (open servers): pass it as the server's `registry`. */
  readonly registry: RedisRegistry;
  readonly directory: NodeDirectory;
  readonly bus: ClusterBus;
  readonly limits: SharedLimits;
  private readonly cards: PeerCards;
  private readonly counters: ClusterCounters = newCounters();
  private readonly log: ClusterLog;
  private closing = false;

  /** @internal Use {@link startCluster}. */
  constructor(
    private readonly keys: ClusterKeys,
    options: ClusterOptions & { nodeId: string },
    private readonly redis: Redis,
    private readonly sub: Redis,
    hooks: ClusterHooks,
  ) {
    this.nodeId = options.nodeId;
    this.advertise = options.advertise;
    this.log = options.log ?? (() => undefined);
    const space = new ClusterKeyspace(options.keyPrefix);
    const common = { redis, keys: space, nodeId: this.nodeId, counters: this.counters, log: this.log };
    this.leases = new Leases({ ...common, ...(options.leaseTtlMs ? { ttlMs: options.leaseTtlMs } : {}) });
    this.registry = new RedisRegistry({ redis, keys: space, storeKey: keys.store, ...(options.onlineTtlMs ? { onlineTtlMs: options.onlineTtlMs } : {}) });
    this.cards = new PeerCards({ redis, nodeId: this.nodeId, keys: space, storeKey: keys.store, ttlMs: this.registry.onlineTtlMs });
    this.directory = new NodeDirectory({
      ...common,
      storeKey: keys.store,
      advertise: this.advertise,
      leases: this.leases,
      load: hooks.load ?? (() => ({ peers: this.leases.size, relaySessions: 0 })),
      ...(options.heartbeatMs ? { heartbeatMs: options.heartbeatMs } : {}),
    });
    this.bus = new ClusterBus({
      ...common,
      sub,
      busKey: keys.bus,
      handlers: {
        deliver: (peerId, msg, fromNode, epoch) => {
          const stale = epoch !== undefined && epoch !== this.leases.epochOf(peerId);
          if (stale) this.counters.cards.stale++;
          hooks.deliver(peerId, msg, fromNode, stale);
        },
        toCoordinator: hooks.toCoordinator,
        revoke: (peerId, epoch, fromNode) => this.leases.superseded(peerId, { node: fromNode, epoch }),
      },
    });
    this.limits = new SharedLimits({ redis, keys: space, nodeId: this.nodeId });
    this.leases.on('took', (peerId, _previous, epoch) => void this.bus.revoke(peerId, epoch));
    this.leases.on('lost', (peerId, reason, by) => {
      this.cards.forget(peerId);
      void this.bus.disown(peerId);
      hooks.leaseLost(peerId, reason, by);
    });
    this.directory.on('down', (id) => {
      this.log('warn', `cluster: node ${id} missed two heartbeats: considered down`);
      this.cards.invalidateAll(id);
      hooks.nodeDown?.(id);
    });
    this.directory.on('up', (n) => this.log('info', `cluster: node ${n.nodeId} is up at ${n.advertise}`));
    this.watchConnection();
  }

  /** @internal */
  async start(): Promise<void> {
    const info = await this.redis.info('server');
    const major = Number(/redis_version:(\d+)/.exec(info)?.[1] ?? 0);
    if (major < 7) throw new TcpPunchError('ERR_CLUSTER_UNSUPPORTED', `Cluster mode needs Redis 7 or later (sharded pub/sub); this one is ${major || 'unknown'}`);
    await this.bus.start();
    await this.directory.start();
  }

  /**
   * Makes this node the owner of `peerId` (the peer just registered here): claims the lease (a higher epoch than
   * any before it), subscribes to the peer's messages, and tells a previous owner node that it lost the peer.
   * @throws TcpPunchError `ERR_CLUSTER_UNAVAILABLE` when Redis cannot be reached (refuse the registration).
   */
  async claimPeer(peerId: string): Promise<{ epoch: string; previous: LeaseHolder | undefined }> {
    const claim = await this.leases.claim(peerId);
    try {
      await this.bus.own(peerId);
    } catch (err) {
      // Owning an id whose messages never arrive would strand its dials: give the lease back.
      await this.leases.release(peerId);
      throw new TcpPunchError('ERR_CLUSTER_UNAVAILABLE', `Cannot subscribe to the messages of ${peerId}: ${String((err as Error)?.message ?? err)}`, { cause: err });
    }
    return claim;
  }

  /**
   * Publishes what a coordinating node needs to punch from `peerId`'s warm port (see cards.ts); a no-op unless this
   * node holds the peer's lease. A failure only costs cross-node dials their warm start.
   */
  async describePeer(peerId: string, card: PeerCard): Promise<void> {
    const epoch = this.leases.epochOf(peerId);
    if (epoch !== undefined) await this.cards.put(peerId, epoch, card);
  }

  /**
   * The card of a peer another node owns, with the lease epoch it belongs to: from this node's cache when it read
   * it lately (no round trip), otherwise read from Redis (one round trip). A cached card may be outdated: send what
   * is planned on it with its epoch (`RemotePeer.send`), and {@link forgetCard} when the owner reports it stale.
   */
  peerCard(peerId: string): CardRecord | undefined | Promise<CardRecord | undefined> {
    const hit = this.cards.cached(peerId);
    if (hit) {
      this.counters.cards.hits++;
      return hit;
    }
    this.counters.cards.misses++;
    return this.cards.get(peerId);
  }

  /** Drops this node's cached card of `peerId` (its owner reported it stale, or the peer went offline). */
  forgetCard(peerId: string): void {
    this.cards.invalidate(peerId);
  }

  /** The peer left this node: release its lease and its messages. */
  async releasePeer(peerId: string): Promise<void> {
    this.cards.forget(peerId);
    await this.bus.disown(peerId);
    await this.leases.release(peerId);
  }

  /** The session key of the remote proxy for `peerId` (see transitKey in crypto.ts). */
  transitKey(peerId: string): Buffer {
    return transitKey(this.keys, peerId);
  }

  /** Counts one cross-node dial's outcome (`ok` or its error code) for {@link stats}. */
  recordCrossNodeDial(outcome: string): void {
    const d = this.counters.crossNodeDials;
    d[outcome] = (d[outcome] ?? 0) + 1;
  }

  /** Sets the local peer count reported in {@link stats}. */
  setLocalPeers(n: number): void {
    this.counters.peersLocal = n;
  }

  /** This node's counters (a copy). */
  stats(): ClusterCounters {
    this.counters.redis.connected = this.redis.status === 'ready';
    return snapshot(this.counters);
  }

  /** Leaves the cluster: stops renewing, releases nothing it still serves (leases lapse), closes Redis. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.leases.close();
    this.registry.close();
    this.cards.close();
    this.limits.close();
    await this.directory.close();
    await this.bus.close();
    this.redis.disconnect();
    this.sub.disconnect();
  }

  private watchConnection(): void {
    let lost = false;
    this.redis.on('close', () => {
      if (lost || this.closing) return;
      lost = true;
      this.counters.redis.connected = false;
      this.log('warn', 'cluster: lost the connection to Redis; same-node dials go on, reconnecting');
    });
    this.redis.on('ready', () => {
      if (!lost || this.closing) return;
      lost = false;
      this.counters.redis.connected = true;
      this.counters.redis.reconnects++;
      this.log('info', 'cluster: Redis is back; re-asserting leases');
      this.cards.invalidateAll(); // the peers may have moved meanwhile
      // Redis may have lost everything (a restart without persistence, a failover): write back what we hold.
      void this.leases.renewAll();
      void this.registry.refresh().catch(() => undefined);
      void this.limits.renewAll();
      void this.directory.beat().catch(() => undefined);
    });
  }
}

/**
 * Connects to Redis, joins the cluster and starts heartbeats.
 * @throws TypeError/RangeError for bad options; TcpPunchError `ERR_CLUSTER_UNAVAILABLE` when Redis does not answer
 * (the CLI exits 3), `ERR_CLUSTER_UNSUPPORTED` for a Redis before 7, `ERR_CLUSTER_NODE_ID_TAKEN`.
 */
export async function startCluster(options: ClusterOptions, hooks: ClusterHooks): Promise<Cluster> {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options.cluster', 'an object', options);
  validateRedisTarget(options.redis);
  const nodeId = options.nodeId ?? `node-${randomBytes(6).toString('hex')}`;
  if (typeof nodeId !== 'string' || !NODE_ID_PATTERN.test(nodeId))
    throw invalidArgValue('options.cluster.nodeId', 'must be 1..64 characters of A-Z a-z 0-9 . _ -', nodeId);
  validateAdvertise(options.advertise);
  if (options.keyPrefix !== undefined && (typeof options.keyPrefix !== 'string' || !/^[A-Za-z0-9._-]{1,32}$/.test(options.keyPrefix)))
    throw invalidArgValue('options.cluster.keyPrefix', 'must be 1..32 characters of A-Z a-z 0-9 . _ -', options.keyPrefix);
  const ranges = { leaseTtlMs: [100, 3_600_000], heartbeatMs: [50, 60_000], onlineTtlMs: [1000, 365 * 86_400_000], connectTimeoutMs: [1, 600_000] } as const;
  for (const [name, [min, max]] of Object.entries(ranges)) {
    const v = (options as unknown as Record<string, unknown>)[name];
    if (v !== undefined) validateInteger(v, `options.cluster.${name}`, min, max);
  }
  const keys = deriveClusterKeys(options.secret);
  const connect = { ...(options.connectTimeoutMs ? { connectTimeoutMs: options.connectTimeoutMs } : {}) };
  const redis = await connectRedis(options.redis, { ...connect, name: `tcp-punch-${nodeId}` });
  let sub: Redis;
  try {
    sub = await connectRedis(options.redis, { ...connect, name: `tcp-punch-${nodeId}-sub`, autoPipelining: false });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const cluster = new Cluster(keys, { ...options, nodeId }, redis, sub, hooks);
  try {
    await cluster.start();
  } catch (err) {
    await cluster.close();
    if (err instanceof TcpPunchError || err instanceof TypeError) throw err;
    throw new TcpPunchError('ERR_CLUSTER_UNAVAILABLE', `Cannot join the cluster at ${redactRedis(options.redis)}: ${String(err)}`, { cause: err });
  }
  (options.log ?? (() => undefined))('info', `cluster: node ${nodeId} joined at ${redactRedis(options.redis)}, advertising ${options.advertise}`);
  return cluster;
}

/** Checks a `host:port` advertise address (`name` is the option or flag named in the error). */
export function validateAdvertise(advertise: unknown, name = 'options.cluster.advertise'): void {
  const bad = (): RangeError => invalidArgValue(name, 'must be "host:port"', advertise);
  if (typeof advertise !== 'string') throw invalidArgType(name, 'a "host:port" string', advertise);
  let url: URL;
  try {
    url = new URL(`tcp://${advertise}`);
  } catch {
    throw bad();
  }
  if (!url.hostname || !(Number(url.port) >= 1) || url.pathname !== '' || url.username || `${url.host}` !== advertise.toLowerCase()) throw bad();
}
