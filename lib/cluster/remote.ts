/**
 * The two pieces of state the server needs for dials across nodes, kept out of the coordinator:
 *
 * - {@link RemotePeer}: what the coordinator talks to for a peer registered on another node. It has the shape of
 *   the coordinator's peer (`id`, `sessionKey`, `send`); `send` goes over the bus to the peer's owner, and when
 *   no node owns the id (Redis delivered to nobody) `onGone` fires once, so the coordinator can end the dial with
 *   `ERR_PEER_OFFLINE`.
 * - {@link CoordRoutes}: on the target's node, which node runs each coordination its local peers take part in, so
 *   their replies (`result`, `sync-ack`, `cancel`...) go back there. Entries expire, bounded in number.
 */
import type { Message } from '../protocol/index.js';
import type { ClusterBus } from './bus.js';

/** A peer on another node, as a coordinator on this node sees it. */
export class RemotePeer {
  /** The node that answered for this peer last (from its replies), if any. */
  node: string | undefined;
  private gone = false;

  /**
   * @param id the peer id
   * @param sessionKey the peer's transit key (Cluster.transitKey): pair keys wrapped with it are re-wrapped by
   *   the owning node
   * @param onGone called once when a message reached no node (the peer is online nowhere) or Redis failed
   */
  constructor(
    readonly id: string,
    readonly sessionKey: Uint8Array,
    private readonly bus: ClusterBus,
    private readonly onGone: (peer: RemotePeer) => void,
  ) {}

  /**
   * Sends over the bus; the answer arrives later (see `onGone`), so this reports only whether it was sent.
   * `epoch`: the lease epoch of the card `msg` was planned on (the owner checks it is still the peer's).
   */
  send(msg: Message, epoch?: string): boolean {
    if (this.gone) return false;
    void this.bus.deliver(this.id, msg, epoch).then((delivered) => {
      if (delivered || this.gone) return;
      this.gone = true;
      this.onGone(this);
    });
    return true;
  }
}

/** Options of {@link CoordRoutes}. */
export interface CoordRoutesOptions {
  /** How long a route outlives its last use; default 120000 ms (longer than any dial). */
  ttlMs?: number;
  /** Most routes kept; the oldest are dropped beyond it. Default 100000. */
  maxEntries?: number;
}

/** coordId -> the node running that coordination. */
export class CoordRoutes {
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  /** hex coordId -> { node, expiry }, in insertion order (oldest first). */
  private readonly routes = new Map<string, { node: string; exp: number }>();

  constructor(options: CoordRoutesOptions = {}) {
    this.ttlMs = options.ttlMs ?? 120_000;
    this.maxEntries = options.maxEntries ?? 100_000;
  }

  /** Routes held. */
  get size(): number {
    return this.routes.size;
  }

  /** Remembers that coordination `coordId` runs on `node`. */
  set(coordId: Uint8Array, node: string, now = Date.now()): void {
    const key = Buffer.from(coordId).toString('hex');
    this.routes.delete(key);
    for (const [k, r] of this.routes) {
      if (r.exp > now && this.routes.size < this.maxEntries) break;
      this.routes.delete(k);
    }
    this.routes.set(key, { node, exp: now + this.ttlMs });
  }

  /** The node running `coordId`, if known and not expired. */
  get(coordId: Uint8Array, now = Date.now()): string | undefined {
    const key = Buffer.from(coordId).toString('hex');
    const r = this.routes.get(key);
    if (!r) return undefined;
    if (r.exp <= now) {
      this.routes.delete(key);
      return undefined;
    }
    return r.node;
  }

  /** Forgets `coordId` (its `end` was delivered). */
  delete(coordId: Uint8Array): void {
    this.routes.delete(Buffer.from(coordId).toString('hex'));
  }

  /** Forgets every coordination of `node` (it went down); returns their ids (hex). */
  dropNode(node: string): string[] {
    const out: string[] = [];
    for (const [k, r] of this.routes) {
      if (r.node !== node) continue;
      this.routes.delete(k);
      out.push(k);
    }
    return out;
  }
}
