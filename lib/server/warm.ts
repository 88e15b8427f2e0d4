/**
 * The server's bookkeeping of peers' warm ports (the reusable ports their control connections leave from):
 *
 * - **busy**: one punch at a time per warm port, since a second listener on the port would share its accepts
 *   (SO_REUSEPORT balances them across listeners);
 * - **links**: a connection punched warm-to-warm between two peers holds both of its 4-tuples until both sides
 *   have closed their sockets (`release`), and another warm-to-warm punch between the pair would duplicate them.
 *
 * Keys are opaque to this module: `owner` is whatever holds a port (a coordination), `key` names a link.
 */

/** A connection punched between two warm ports, and the sides that still hold their socket of it. */
interface Link<P> {
  readonly key: string;
  readonly peers: readonly [P, P];
  readonly holding: Set<P>;
}

/** Most links remembered per peer; beyond it the peer counts as linked with everyone (fresh ports). */
const MAX_LINKS_PER_PEER = 256;

export class WarmPorts<P extends object, O> {
  private readonly busy = new Map<P, O>();
  private readonly links = new Map<string, Link<P>>();
  private readonly linksOf = new Map<P, Set<Link<P>>>();

  /** True when a punch holds `peer`'s warm port. */
  isBusy(peer: P): boolean {
    return this.busy.has(peer);
  }

  occupy(peer: P, owner: O): void {
    this.busy.set(peer, owner);
  }

  /** Frees `peer`'s port if `owner` holds it. */
  free(peer: P, owner: O): void {
    if (this.busy.get(peer) === owner) this.busy.delete(peer);
  }

  /** True while a warm-to-warm connection between `a` and `b` may still hold its 4-tuples. */
  linked(a: P, b: P): boolean {
    const mine = this.linksOf.get(a);
    if (mine && mine.size >= MAX_LINKS_PER_PEER) return true;
    for (const link of mine ?? []) if (link.peers.includes(b)) return true;
    return false;
  }

  /** Records that `a` and `b` punch warm-to-warm in the dial `key`. */
  link(key: string, a: P, b: P): void {
    const link: Link<P> = { key, peers: [a, b], holding: new Set([a, b]) };
    this.links.set(key, link);
    for (const p of link.peers) {
      let set = this.linksOf.get(p);
      if (!set) this.linksOf.set(p, (set = new Set()));
      set.add(link);
    }
  }

  /** `peer` no longer holds a socket of the dial `key` (it closed it, or never got one). */
  release(key: string, peer: P): void {
    const link = this.links.get(key);
    if (!link || !link.holding.delete(peer) || link.holding.size > 0) return;
    this.drop(link);
  }

  /** `peer`'s session ended: its warm port, and every link through it, went with the connection. */
  forget(peer: P): void {
    this.busy.delete(peer);
    for (const link of [...(this.linksOf.get(peer) ?? [])]) this.drop(link);
    this.linksOf.delete(peer);
  }

  private drop(link: Link<P>): void {
    if (this.links.get(link.key) === link) this.links.delete(link.key);
    for (const p of link.peers) this.linksOf.get(p)?.delete(link);
  }
}
