/**
 * Names of everything the cluster keeps in Redis, in one place.
 *
 * Each key carries a hash tag (`{...}`) so that the keys a script touches together fall into one slot of a Redis
 * Cluster. Peer ids may contain any printable character, braces included, so they enter key names base64url
 * encoded.
 */

/** Builds the key and channel names of one cluster (all under `prefix`). */
export class ClusterKeyspace {
  constructor(readonly prefix = 'tp') {}

  /** The ownership lease of a peer id: `<epoch>|<nodeId>`, expiring with the lease. */
  lease(peerId: string): string {
    return `${this.prefix}:lease:{${tag(peerId)}}`;
  }

  /** An open server's credential record of a peer id (sealed). */
  credential(peerId: string): string {
    return `${this.prefix}:cred:{${tag(peerId)}}`;
  }

  /** A peer's card (cards.ts): its warm mapping and round trip, sealed, stamped with its lease's epoch. */
  card(peerId: string): string {
    return `${this.prefix}:card:{${tag(peerId)}}`;
  }

  /** The sharded channel a peer's owner subscribes to: messages for that peer. */
  peerChannel(peerId: string): string {
    return `${this.prefix}:to-peer:{${tag(peerId)}}`;
  }

  /** The sharded channel of one node: replies to the coordinations it runs. */
  nodeChannel(nodeId: string): string {
    return `${this.prefix}:to-node:{${tag(nodeId)}}`;
  }

  /** Sorted set of node ids by last heartbeat (ms, Redis clock). */
  get nodesSeen(): string {
    return `${this.prefix}:nodes:{nodes}:seen`;
  }

  /** Hash of node id -> sealed node record. */
  get nodesInfo(): string {
    return `${this.prefix}:nodes:{nodes}:info`;
  }

  /** Holders of one cluster-wide limit (`kind` e.g. `relay-peer`, `key` the peer id or IP). */
  slots(kind: string, key: string): string {
    return `${this.prefix}:slots:{${kind}:${tag(key)}}`;
  }

  /** A fixed-window rate counter. */
  rate(kind: string, key: string, window: number): string {
    return `${this.prefix}:rate:{${kind}:${tag(key)}}:${window}`;
  }
}

function tag(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}
