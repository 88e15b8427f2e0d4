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
 */
import type { Redis } from 'ioredis';

import type { Observation } from '../server/plan.js';
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
}

/** Reads and writes peer cards; keeps this node's own for rewriting. */
export class PeerCards {
  private readonly own = new Map<string, { epoch: string; card: PeerCard }>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: PeerCardsOptions) {
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

  /** The card of `peerId` for its current lease, or undefined (none, an older registration's, or unreadable). */
  async get(peerId: string): Promise<PeerCard | undefined> {
    const key = this.o.keys.card(peerId);
    const [lease, box] = await this.o.redis.mgetBuffer(this.o.keys.lease(peerId), key);
    const holder = parseHolder(lease?.toString('utf8'));
    if (!holder || !box) return undefined;
    const plain = open(this.o.storeKey, key, box);
    if (!plain) return undefined;
    try {
      const rec = JSON.parse(plain.toString('utf8')) as { epoch?: unknown; card?: PeerCard };
      return rec.epoch === holder.epoch && rec.card ? rec.card : undefined;
    } catch {
      return undefined;
    }
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
