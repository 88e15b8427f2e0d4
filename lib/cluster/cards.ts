/**
 * Peer cards: what the node that owns a peer knows about it and a coordinating node needs before a dial — the
 * control connection's mapping when its port is warm (reusable), and its round trip. With the card a cross-node
 * dial punches from warm ports like a same-node one, instead of observing a fresh port first.
 *
 * One sealed record per peer id, under the same hash tag as the id's lease and stamped with the lease's epoch. The
 * owner writes it with a script that checks the lease is still its own, so a node that lost the id cannot write
 * over the new owner's card. A reader fetches lease and card in one MGET and trusts the card only when its epoch is
 * the lease's: the card of an earlier registration (another connection, another mapping) is never used, so a
 * coordinator never punches towards a mapping older than the peer's connection. Cards live as long as registry
 * records of online peers (`ttlMs`) and the owner rewrites its own before they lapse.
 *
 * A coordinating node keeps the cards it read, with their epochs, for `cacheMs` (bounded in number), so a dial to
 * a peer it has dialed recently needs no Redis round trip before its `coord` leaves. A cached card may be outdated
 * (the peer registered again since): the coord travels with the card's epoch, the owner compares it with the lease
 * it holds and, when they differ, keeps its peer out of that attempt and says so (lib/server/cluster-link.ts), and
 * the entry is dropped here. The cache is also dropped for a peer gone offline, for a node gone down, and whole
 * when the connection to Redis comes back (what it holds may predate the outage).
 */
import type { Redis } from 'ioredis';

import type { Observation } from '../protocol/observation.js';
import { open, seal } from './crypto.js';
import { callScript } from './redis.js';
import type { ClusterKeyspace } from './keys.js';
import { parseHolder } from './leases.js';

/** A peer's card (see the module comment). */
export interface PeerCard {
  /** The control connection's observation when its port is reusable; absent otherwise. */
  warm?: Observation;
  /** Round trip between the peer and its node in ms (0: unknown). */
  rttMs: number;
}

/** A card with the lease epoch (and owner node) it was published under. */
export interface CardRecord {
  epoch: string;
  node: string;
  card: PeerCard;
}

/** KEYS: lease, card. ARGV: the lease value this node holds, the sealed card, ttl ms. 1: written, 0: not our lease. */
const PUT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
`;

/** Options of {@link PeerCards}. */
export interface PeerCardsOptions {
  redis: Redis;
  nodeId: string;
  keys: ClusterKeyspace;
  /** The cluster's store key (see deriveClusterKeys). */
  storeKey: Buffer;
  /** Lifetime of a card between rewrites (ms). */
  ttlMs: number;
  /** How long a card read from Redis is reused (ms); default 30000, 0 disables the cache. */
  cacheMs?: number;
  /** Most cards cached; default 20000 (the oldest go first). */
  cacheMax?: number;
}

/** Reads and writes peer cards; keeps this node's own for rewriting. */
export class PeerCards {
  private readonly own = new Map<string, { epoch: string; card: PeerCard }>();
  /** Cards read from Redis, oldest first, with their expiry. */
  private readonly cache = new Map<string, { rec: CardRecord; exp: number }>();
  private readonly cacheMs: number;
  private readonly cacheMax: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: PeerCardsOptions) {
    this.cacheMs = o.cacheMs ?? 30_000;
    this.cacheMax = o.cacheMax ?? 20_000;
    o.redis.defineCommand('tpCardPut', { numberOfKeys: 2, lua: PUT });
    this.timer = setInterval(() => void this.rewrite().catch(() => undefined), Math.max(10, Math.floor(o.ttlMs / 3)));
    this.timer.unref();
  }

  /** Publishes (or replaces) the card of a peer this node holds the lease of, at lease epoch `epoch`. */
  async put(peerId: string, epoch: string, card: PeerCard): Promise<void> {
    this.own.set(peerId, { epoch, card });
    await this.write(peerId, epoch, card);
  }

  /** The peer left this node: its card is no longer rewritten (it lapses, and its epoch is outranked anyway). */
  forget(peerId: string): void {
    this.own.delete(peerId);
  }

  /** The card of `peerId` as last read, if read within `cacheMs` (no Redis round trip). */
  cached(peerId: string, now = Date.now()): CardRecord | undefined {
    const hit = this.cache.get(peerId);
    if (hit && hit.exp > now) return hit.rec;
    if (hit) this.cache.delete(peerId);
    return undefined;
  }

  /**
   * Reads the card of `peerId` for its current lease, or undefined (none, an older registration's, or unreadable),
   * and caches it.
   */
  async get(peerId: string): Promise<CardRecord | undefined> {
    const key = this.o.keys.card(peerId);
    const [lease, box] = await this.o.redis.mgetBuffer(this.o.keys.lease(peerId), key);
    const holder = parseHolder(lease?.toString('utf8'));
    const plain = holder && box ? open(this.o.storeKey, key, box) : undefined;
    let rec: CardRecord | undefined;
    try {
      const r = plain && (JSON.parse(plain.toString('utf8')) as { epoch?: unknown; card?: PeerCard });
      if (r && r.epoch === holder!.epoch && r.card) rec = { epoch: holder!.epoch, node: holder!.node, card: r.card };
    } catch {
      // unreadable: as if there were none
    }
    this.cache.delete(peerId);
    if (rec && this.cacheMs > 0) {
      if (this.cache.size >= this.cacheMax) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(peerId, { rec, exp: Date.now() + this.cacheMs });
    }
    return rec;
  }

  /** Drops the cached card of `peerId` (outdated, or the peer went offline). */
  invalidate(peerId: string): void {
    this.cache.delete(peerId);
  }

  /** Drops every cached card of peers owned by `node`, or all of them. */
  invalidateAll(node?: string): void {
    if (node === undefined) return this.cache.clear();
    for (const [id, { rec }] of this.cache) if (rec.node === node) this.cache.delete(id);
  }

  /** Stops rewriting. */
  close(): void {
    clearInterval(this.timer);
  }

  private async write(peerId: string, epoch: string, card: PeerCard): Promise<void> {
    const key = this.o.keys.card(peerId);
    const box = seal(this.o.storeKey, key, Buffer.from(JSON.stringify({ epoch, card }), 'utf8'));
    const lease = `${epoch}|${this.o.nodeId}`;
    const written = await callScript<number>(this.o.redis, 'tpCardPut', this.o.keys.lease(peerId), key, lease, box, this.o.ttlMs);
    if (written === 0 && this.own.get(peerId)?.epoch === epoch) this.own.delete(peerId); // the lease moved on
  }

  private async rewrite(): Promise<void> {
    await Promise.all([...this.own].map(([id, { epoch, card }]) => this.write(id, epoch, card)));
  }
}
