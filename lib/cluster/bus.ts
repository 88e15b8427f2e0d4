/**
 * The message bus between nodes, on Redis sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7).
 *
 * Routing is Redis's: a node subscribes to the channel of every peer it owns and to its own node channel, so
 * `deliver(peerId, msg)` is one SPUBLISH that reaches only the owner of `peerId` (Redis answers how many nodes got
 * it: zero means the peer is online nowhere), and `toCoordinator(nodeId, ...)` reaches only the node running that
 * coordination. Nothing is broadcast, and the sender needs no lookup round trip.
 *
 * Every message is sealed with the bus key (see crypto.ts), bound to its channel, and carries its send time and a
 * random id: a message that does not open (another secret, forged, corrupted), is older than `maxSkewMs`, or is a
 * replay of one already seen is dropped with a log line and a counter, never thrown. Pub/sub is at most once: a
 * message published while the owner's subscription is down is lost, and the dial it belonged to times out and
 * retries like a dial whose packet was lost.
 */
import type { Redis } from 'ioredis';

import type { Message } from '../protocol/index.js';
import { open, seal } from './crypto.js';
import { decodeEnvelope, encodeEnvelope } from './envelope.js';
import type { Envelope, EnvelopeInput } from './envelope.js';
import type { ClusterKeyspace } from './keys.js';
import type { ClusterCounters, ClusterLog, DropReason } from './stats.js';

/** What the bus hands to the server. Handlers must not throw (a throw is logged and the message dropped). */
export interface BusHandlers {
  /**
   * A message for `peerId`, which this node owns; `fromNode` runs the coordination it belongs to. `epoch`: the
   * lease epoch of the card the sender planned it on, if it did.
   */
  deliver(peerId: string, msg: Message, fromNode: string, epoch: string | undefined): void;
  /** A peer's message for coordination `coordId`, which runs on this node. */
  toCoordinator(coordId: Uint8Array, fromPeer: string, msg: Message, fromNode: string): void;
  /** Node `fromNode` claimed `peerId` with fencing epoch `epoch`. */
  revoke(peerId: string, epoch: string, fromNode: string): void;
}

/** Options of {@link ClusterBus}. */
export interface ClusterBusOptions {
  /** Connection for publishing. */
  redis: Redis;
  /** A second connection, used only for subscriptions. */
  sub: Redis;
  keys: ClusterKeyspace;
  busKey: Buffer;
  nodeId: string;
  handlers: BusHandlers;
  counters: ClusterCounters;
  log: ClusterLog;
  /** Oldest (or most future) send time accepted, in ms; default 30000. Node clocks must agree within it. */
  maxSkewMs?: number;
  /** Most message ids remembered against replays; default 100000. */
  maxRemembered?: number;
}

/** Sends and receives cluster messages. */
export class ClusterBus {
  private readonly maxSkewMs: number;
  private readonly maxRemembered: number;
  /** Seen message id (hex) -> send time, oldest first. */
  private readonly seen = new Map<string, number>();
  private readonly onMessage = (channel: Buffer, box: Buffer): void => this.receive(channel.toString('utf8'), box);
  private lastDropLog = 0;
  private droppedSinceLog = 0;

  constructor(private readonly o: ClusterBusOptions) {
    this.maxSkewMs = o.maxSkewMs ?? 30_000;
    this.maxRemembered = o.maxRemembered ?? 100_000;
  }

  /** Subscribes to this node's channel. */
  async start(): Promise<void> {
    this.o.sub.on('smessageBuffer', this.onMessage);
    await this.o.sub.ssubscribe(this.o.keys.nodeChannel(this.o.nodeId));
  }

  /** Starts receiving the messages for `peerId` (call once its lease is ours). */
  async own(peerId: string): Promise<void> {
    await this.o.sub.ssubscribe(this.o.keys.peerChannel(peerId));
  }

  /** Stops receiving the messages for `peerId`. */
  async disown(peerId: string): Promise<void> {
    await this.o.sub.sunsubscribe(this.o.keys.peerChannel(peerId)).catch(() => undefined);
  }

  /**
   * Sends `msg` to the node that owns `peerId`; false when no node owns it (or Redis failed). `epoch`: the lease
   * epoch of the peer's card `msg` was planned on, for the owner to check.
   */
  deliver(peerId: string, msg: Message, epoch?: string): Promise<boolean> {
    const e: EnvelopeInput = { kind: 'deliver', fromNode: this.o.nodeId, peerId, msg, ...(epoch !== undefined ? { epoch } : {}) };
    return this.publish(this.o.keys.peerChannel(peerId), e);
  }

  /** Sends a peer's message to the node running coordination `coordId`; false when that node is not listening. */
  toCoordinator(nodeId: string, coordId: Uint8Array, fromPeer: string, msg: Message): Promise<boolean> {
    return this.publish(this.o.keys.nodeChannel(nodeId), { kind: 'to-coordinator', fromNode: this.o.nodeId, coordId, fromPeer, msg });
  }

  /** Tells whoever else owns `peerId` that this node claimed it with `epoch`. */
  revoke(peerId: string, epoch: string): Promise<boolean> {
    return this.publish(this.o.keys.peerChannel(peerId), { kind: 'revoke', fromNode: this.o.nodeId, peerId, epoch });
  }

  /** Stops receiving. */
  async close(): Promise<void> {
    this.o.sub.off('smessageBuffer', this.onMessage);
    await this.o.sub.sunsubscribe().catch(() => undefined);
  }

  /** Publishes a raw, already sealed payload on `channel` (tests use it to play a foreign publisher). */
  async publishRaw(channel: string, payload: Buffer): Promise<number> {
    return Number(await this.o.redis.spublish(channel, payload));
  }

  private async publish(channel: string, e: EnvelopeInput): Promise<boolean> {
    const { bus } = this.o.counters;
    const box = seal(this.o.busKey, channel, encodeEnvelope(e));
    let receivers: number;
    try {
      receivers = Number(await this.o.redis.spublish(channel, box));
    } catch {
      bus.sendErrors++;
      return false;
    }
    bus.sent++;
    if (receivers === 0) bus.undeliverable++;
    return receivers > 0;
  }

  private receive(channel: string, box: Buffer): void {
    const plain = open(this.o.busKey, channel, box);
    if (!plain) return this.drop('forged', channel, 'it does not open with this cluster\'s key (another secret?)');
    let e: Envelope;
    try {
      e = decodeEnvelope(plain);
    } catch (err) {
      return this.drop('malformed', channel, (err as Error).message);
    }
    const now = Date.now();
    if (!(Math.abs(now - e.sentAt) <= this.maxSkewMs)) return this.drop('stale', channel, `sent ${Math.round(now - e.sentAt)} ms ago`);
    const id = e.msgId.toString('hex');
    if (this.seen.has(id)) return this.drop('replayed', channel, 'its id was seen before');
    this.remember(id, e.sentAt, now);
    if (!this.routable(channel, e)) return this.drop('unroutable', channel, `a ${e.kind} message does not belong on it`);
    this.o.counters.bus.received++;
    try {
      if (e.kind === 'deliver') this.o.handlers.deliver(e.peerId, e.msg, e.fromNode, e.epoch);
      else if (e.kind === 'to-coordinator') this.o.handlers.toCoordinator(e.coordId, e.fromPeer, e.msg, e.fromNode);
      else if (e.fromNode !== this.o.nodeId) this.o.handlers.revoke(e.peerId, e.epoch, e.fromNode);
    } catch (err) {
      this.o.log('error', `cluster: handler of a ${e.kind} message threw: ${String(err)}`);
    }
  }

  /** A sealed message is bound to its channel; this checks its contents agree with that channel too. */
  private routable(channel: string, e: Envelope): boolean {
    if (e.kind === 'to-coordinator') return channel === this.o.keys.nodeChannel(this.o.nodeId);
    return channel === this.o.keys.peerChannel(e.peerId);
  }

  private remember(id: string, sentAt: number, now: number): void {
    for (const [k, t] of this.seen) {
      if (t >= now - 2 * this.maxSkewMs && this.seen.size < this.maxRemembered) break;
      this.seen.delete(k);
    }
    this.seen.set(id, sentAt);
  }

  private drop(reason: DropReason, channel: string, why: string): void {
    this.o.counters.bus.dropped[reason]++;
    // One line per second at most: a flood of forged messages must not become a flood of log lines.
    this.droppedSinceLog++;
    const now = Date.now();
    if (now - this.lastDropLog < 1000) return;
    const more = this.droppedSinceLog > 1 ? ` (${this.droppedSinceLog - 1} more dropped since the last line)` : '';
    this.lastDropLog = now;
    this.droppedSinceLog = 0;
    this.o.log('warn', `cluster: dropped a ${reason} message on ${channel}: ${why}${more}`);
  }
}
