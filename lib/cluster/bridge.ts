/**
 * The glue between a server's local sessions and coordinator and the cluster, in one place, so the server only
 * answers three questions ({@link BridgeServer}) and calls three functions (`remote`, `fromLocalPeer`, `notify`).
 *
 * It knows protocol messages only by two field names every coordination message carries: `coordId` (which
 * coordination) and, in the message that starts a coordination for a side, `pairKey` (wrapped for that side).
 * The last message of a coordination is `end`.
 *
 * - Coordinator → remote peer: the coordinator sends to a {@link RemotePeer} (from {@link ClusterBridge.remote}),
 *   whose `sessionKey` is the peer's transit key; on the owner node {@link ClusterHooks.deliver} re-wraps the pair
 *   key with the peer's real session key, remembers which node runs the coordination, and sends to the session.
 * - Remote peer → coordinator: {@link ClusterBridge.fromLocalPeer} sends a local peer's message for a coordination
 *   that runs elsewhere back to that node, where it reaches the coordinator as coming from the same RemotePeer
 *   object the coordinator holds (coordinators tell sides apart by identity).
 */
import { wrapPairKey } from '../protocol/index.js';
import type { Message } from '../protocol/index.js';
import type { Cluster, ClusterHooks } from './cluster.js';
import { CoordRoutes } from './remote.js';
import { RemotePeer } from './remote.js';

/** A registered local session, as the bridge needs it. */
export interface LocalPeer {
  readonly id: string;
  /** The session key pair keys are wrapped with for this peer. */
  readonly sessionKey: Uint8Array;
  send(msg: Message): boolean;
  /** Ends the session with an error code sent to the peer. */
  fail(code: string, message: string): void;
}

/** What the bridge asks of the server. */
export interface BridgeServer {
  /** The local session registered as `id`, if any. */
  local(id: string): LocalPeer | undefined;
  /** A remote side's message for coordination `coordId`, which runs here (route it as if `from` sent it). */
  coordinatorMessage(coordId: Uint8Array, from: RemotePeer, msg: Message): void;
  /** A remote peer is online nowhere (a message reached no node) or its node went down: `peerGone(peer)`. */
  remoteGone(peer: RemotePeer): void;
  /**
   * `msg` for local peer `peerId` was planned on an outdated card of it (see lib/cluster/cards.ts): what to pass
   * to the session instead (undefined: nothing). The server tells the coordination on `fromNode`.
   */
  stale(peerId: string, msg: Message, fromNode: string): Message | undefined;
}

type WithCoord = Message & { coordId: Uint8Array; pairKey?: Uint8Array };

function coordOf(msg: Message): Uint8Array | undefined {
  const c = (msg as Partial<WithCoord>).coordId;
  return c instanceof Uint8Array ? c : undefined;
}

/** Routes between a server and the cluster. */
export class ClusterBridge {
  /** On a target's node: coordId -> the node running it. */
  readonly routes = new CoordRoutes();
  private readonly proxies = new Map<string, RemotePeer>();
  private cluster: Cluster | undefined;

  constructor(private readonly server: BridgeServer) {}

  /** Completes the bridge once startCluster has resolved with the {@link hooks} given to it. */
  attach(cluster: Cluster): void {
    this.cluster = cluster;
  }

  /** The hooks to pass to startCluster. */
  hooks(): ClusterHooks {
    return {
      deliver: (peerId, msg, fromNode, stale) => this.deliver(peerId, msg, fromNode, stale),
      toCoordinator: (coordId, fromPeer, msg, fromNode) => {
        const proxy = this.remote(fromPeer);
        proxy.node = fromNode;
        this.server.coordinatorMessage(coordId, proxy, msg);
      },
      leaseLost: (peerId, reason) => {
        const text = reason === 'stolen' ? 'This id registered on another node' : 'The cluster could not confirm this registration';
        this.server.local(peerId)?.fail(reason === 'stolen' ? 'ERR_REPLACED' : 'ERR_CLUSTER_UNAVAILABLE', text);
      },
      nodeDown: (nodeId) => {
        this.routes.dropNode(nodeId);
        for (const p of [...this.proxies.values()]) if (p.node === nodeId) this.gone(p);
      },
    };
  }

  /** The coordinator's peer for `id` when no local session has it (one object per id while it is reachable). */
  remote(id: string): RemotePeer {
    let p = this.proxies.get(id);
    if (!p) {
      const cluster = this.need();
      p = new RemotePeer(id, cluster.transitKey(id), cluster.bus, (gone) => this.gone(gone));
      this.proxies.set(id, p);
    }
    return p;
  }

  /**
   * A local peer sent `msg`; if it belongs to a coordination running on another node, sends it there and returns
   * true. False: not a coordination message, or a coordination this node runs or does not know.
   */
  fromLocalPeer(peerId: string, msg: Message): boolean {
    const coordId = coordOf(msg);
    const node = coordId && this.routes.get(coordId);
    if (!coordId || !node) return false;
    void this.need().bus.toCoordinator(node, coordId, peerId, msg);
    return true;
  }

  /** Sends `msg` to peer `peerId` wherever it is registered (the relay's notices, e.g. `relay-end`). */
  notify(peerId: string, msg: Message): void {
    const local = this.server.local(peerId);
    if (local) local.send(msg);
    else void this.need().bus.deliver(peerId, msg);
  }

  private deliver(peerId: string, msg: Message, fromNode: string, stale: boolean): void {
    const local = this.server.local(peerId);
    if (!local) return; // left meanwhile: the coordinator's phase timeout ends the dial
    if (stale) {
      const instead = this.server.stale(peerId, msg, fromNode);
      if (!instead) return;
      msg = instead;
    }
    const coordId = coordOf(msg);
    if (coordId) {
      if (msg.type === 'end') this.routes.delete(coordId);
      else this.routes.set(coordId, fromNode);
    }
    const pairKey = (msg as Partial<WithCoord>).pairKey;
    if (coordId && pairKey instanceof Uint8Array && pairKey.length === 32) {
      const plain = wrapPairKey(this.need().transitKey(peerId), coordId, pairKey);
      msg = { ...msg, pairKey: wrapPairKey(local.sessionKey, coordId, plain) } as Message;
    }
    local.send(msg);
  }

  private gone(p: RemotePeer): void {
    if (this.proxies.get(p.id) === p) this.proxies.delete(p.id);
    this.server.remoteGone(p);
  }

  private need(): Cluster {
    if (!this.cluster) throw new Error('ClusterBridge used before attach()');
    return this.cluster;
  }
}
