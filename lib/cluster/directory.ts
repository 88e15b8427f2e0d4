/**
 * The node directory: which nodes are up, and where to reach them.
 *
 * Each node announces itself every `heartbeatMs` with a sealed record (its id, the address peers and other nodes
 * reach it at, how many peers it serves) and the Redis clock time of the heartbeat in a sorted set. A node whose
 * last heartbeat is older than `2.5 × heartbeatMs` (two missed beats) is down; records older than ten beats are
 * swept. A record that does not open with this cluster's key (another secret) is ignored and counted: a node
 * with another secret cannot join.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';

import type { Redis } from 'ioredis';

import { TcpPunchError } from '../errors.js';
import { open, seal } from './crypto.js';
import type { ClusterKeyspace } from './keys.js';
import type { Leases } from './leases.js';
import { LUA_NOW_MS, callScript, measureRtt } from './redis.js';
import { recordRtt } from './stats.js';
import type { ClusterCounters, ClusterLog } from './stats.js';

/** Missed heartbeats after which a node is down: two, and half a beat for jitter. */
const DOWN_AFTER_BEATS = 2.5;
/** Records older than this many beats are swept. */
const SWEEP_AFTER_BEATS = 10;

/** One node as the directory knows it. */
export interface NodeInfo {
  nodeId: string;
  /** `host:port` other nodes and peers reach this node at (control and relay). */
  advertise: string;
  /** Peers registered on the node at its last heartbeat. */
  peers: number;
  /** Relayed sessions running on the node at its last heartbeat. */
  relaySessions: number;
  /** Random per process: tells a restarted node, or a second process with the same id, from the first. */
  instance: string;
  startedAt: number;
}

/** ARGV: nodeId, record, downAfterMs, sweepAfterMs. Returns the live records (id, record, id, record...). */
const BEAT = `
${LUA_NOW_MS}
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
for _, id in ipairs(dead) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[3]), '+inf')
local out = {}
for _, id in ipairs(live) do
  local rec = redis.call('HGET', KEYS[2], id)
  if rec then table.insert(out, id) table.insert(out, rec) end
end
return out
`;

/** Events of {@link NodeDirectory}. */
export interface DirectoryEvents {
  up: [node: NodeInfo];
  /** Missed two heartbeats (or left): coordinations with its peers are over. */
  down: [nodeId: string];
}

/** Options of {@link NodeDirectory}. */
export interface NodeDirectoryOptions {
  redis: Redis;
  keys: ClusterKeyspace;
  storeKey: Buffer;
  nodeId: string;
  advertise: string;
  leases: Leases;
  /** Default 2000 ms; a node is down after 2.5 × this without a heartbeat. */
  heartbeatMs?: number;
  /** What this node reports about its load at each heartbeat. */
  load: () => { peers: number; relaySessions: number };
  counters: ClusterCounters;
  log: ClusterLog;
}

/** Announces this node and tracks the others. */
export class NodeDirectory extends EventEmitter<DirectoryEvents> {
  readonly heartbeatMs: number;
  readonly instance = randomBytes(8).toString('hex');
  private readonly startedAt = Date.now();
  private live = new Map<string, NodeInfo>();
  private readonly rejected = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** When the heartbeats last started succeeding again (infinity while they fail; -infinity at start). */
  private connectedSince = Number.NEGATIVE_INFINITY;
  private started = false;

  constructor(private readonly o: NodeDirectoryOptions) {
    super();
    this.heartbeatMs = o.heartbeatMs ?? 2000;
    o.redis.defineCommand('tpNodeBeat', { numberOfKeys: 2, lua: BEAT });
  }

  /**
   * Joins: refuses a node id that a live process other than this one announces, then beats.
   * @throws TcpPunchError `ERR_CLUSTER_NODE_ID_TAKEN`.
   */
  async start(): Promise<void> {
    await this.beat(false);
    const other = this.live.get(this.o.nodeId);
    // A record of our id may be our own previous process, killed a moment ago: it is another live node only if
    // it keeps beating.
    if (other && other.instance !== this.instance) {
      const seen = await this.o.redis.zscore(this.o.keys.nodesSeen, this.o.nodeId);
      await new Promise((r) => setTimeout(r, Math.round(this.heartbeatMs * 1.5)));
      if ((await this.o.redis.zscore(this.o.keys.nodesSeen, this.o.nodeId)) !== seen)
        throw new TcpPunchError('ERR_CLUSTER_NODE_ID_TAKEN', `Node id ${this.o.nodeId} is in use by a live node (${other.advertise})`);
    }
    this.started = true;
    await this.beat(true);
    this.timer = setInterval(() => void this.beat(true).catch(() => undefined), this.heartbeatMs);
    this.timer.unref();
  }

  /** Live nodes, this one included, as of the last heartbeat. */
  nodes(): NodeInfo[] {
    return [...this.live.values()];
  }

  /** A live node by id. */
  node(nodeId: string): NodeInfo | undefined {
    return this.live.get(nodeId);
  }

  /** The live node holding `peerId`'s lease, or undefined when the id is not online on a live node. */
  async ownerOf(peerId: string): Promise<(NodeInfo & { epoch: string }) | undefined> {
    const holder = await this.o.leases.owner(peerId);
    const node = holder && this.live.get(holder.node);
    return node && { ...node, epoch: holder.epoch };
  }

  /** One heartbeat (announce = false only reads). Also measures the Redis round trip. */
  async beat(announce = true): Promise<void> {
    const { counters } = this.o;
    let rtt: number;
    try {
      rtt = await measureRtt(this.o.redis);
    } catch (err) {
      this.connectedSince = Number.POSITIVE_INFINITY;
      throw err;
    }
    if (this.connectedSince === Number.POSITIVE_INFINITY) this.connectedSince = performance.now();
    recordRtt(counters, rtt);
    const record = announce ? this.record() : '';
    const reply = await callScript<Buffer[]>(
      this.o.redis, 'tpNodeBeatBuffer',
      this.o.keys.nodesSeen, this.o.keys.nodesInfo, this.o.nodeId, record, Math.round(this.heartbeatMs * DOWN_AFTER_BEATS), this.heartbeatMs * SWEEP_AFTER_BEATS,
    );
    const next = new Map<string, NodeInfo>();
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const id = reply[i]!.toString('utf8');
      const info = this.openRecord(id, reply[i + 1]!);
      if (info) next.set(id, info);
    }
    const before = this.live;
    // Just after a reconnect (Redis restarted empty) the others have not beaten again yet: they are not down.
    if (performance.now() - this.connectedSince < this.heartbeatMs * DOWN_AFTER_BEATS)
      for (const [id, info] of before) if (!next.has(id)) next.set(id, info);
    this.live = next;
    counters.nodesUp = next.size;
    counters.clusterPeers = [...next.values()].reduce((n, x) => n + x.peers, 0);
    for (const [id, info] of next) if (!before.has(id) && id !== this.o.nodeId) this.emit('up', info);
    for (const id of before.keys()) if (!next.has(id) && id !== this.o.nodeId) this.emit('down', id);
  }

  /** Stops beating and removes this node from the directory. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    if (!this.started) return; // the id may belong to another live node: leave its record alone
    await Promise.all([
      this.o.redis.zrem(this.o.keys.nodesSeen, this.o.nodeId),
      this.o.redis.hdel(this.o.keys.nodesInfo, this.o.nodeId),
    ]).catch(() => undefined);
  }

  private record(): Buffer {
    const info: NodeInfo = {
      nodeId: this.o.nodeId,
      advertise: this.o.advertise,
      ...this.o.load(),
      instance: this.instance,
      startedAt: this.startedAt,
    };
    return seal(this.o.storeKey, `node ${this.o.nodeId}`, Buffer.from(JSON.stringify(info)));
  }

  private openRecord(id: string, box: Buffer): NodeInfo | undefined {
    const plain = open(this.o.storeKey, `node ${id}`, box);
    let info: NodeInfo | undefined;
    try {
      info = plain && (JSON.parse(plain.toString('utf8')) as NodeInfo);
    } catch {
      info = undefined;
    }
    if (info && info.nodeId === id && typeof info.advertise === 'string' && Number.isFinite(info.peers)) {
      this.rejected.delete(id);
      return info;
    }
    this.o.counters.nodesRejected++;
    if (!this.rejected.has(id)) {
      this.rejected.add(id);
      this.o.log('warn', `cluster: ignoring node ${JSON.stringify(id)}: its record does not open with this cluster's secret`);
    }
    return undefined;
  }
}
