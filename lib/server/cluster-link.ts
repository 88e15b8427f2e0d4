/**
 * The server's side of cluster mode (docs/CLUSTER.md, "Integration"): one {@link ClusterLink} per server node,
 * holding the {@link Cluster} and its {@link ClusterBridge}, and answering the few questions the server, its
 * sessions and its coordinator ask in cluster mode:
 *
 * - registration: {@link ClusterLink.claim} before `welcome`, {@link ClusterLink.release} when a session ends;
 * - the coordinator's lookup seam: {@link ClusterLink.lookup} gives a {@link CoordPeer} for a peer on another node
 *   (a {@link RemotePeer} behind an adapter: pair keys wrapped with its transit key; its warm mapping and RTT from
 *   the card its node publishes, see lib/cluster/cards.ts, cached here so that a repeated dial needs no Redis
 *   round trip before its `coord` leaves);
 * - outdated cards: what a coordinator planned on a card travels with the card's epoch; the owner node keeps its
 *   peer out of an attempt planned on an earlier registration's card ({@link ClusterLink.stale}: the `coord`
 *   without its folded attempt, no warm `prepare`) and reports the attempt failed for that side, so the
 *   coordinator's next attempt observes fresh ports; the coordinating node drops the card;
 * - peer → coordinator routing: {@link ClusterLink.fromLocalPeer} for a local peer's message of a coordination that
 *   runs elsewhere, and remote peers' messages reaching the local coordinator as the same adapter object;
 * - observe connections: a local peer's observe connection for a coordination running on another node is
 *   answered here (`observed`) and forwarded to that node (the observed public endpoint travels as the first entry
 *   of the forwarded `observe`'s `private` list, a convention of this module on both ends);
 * - the relay: its notices ({@link ClusterLink.notify}) and its admission hook ({@link ClusterLink.relayAdmission},
 *   per-peer and per-IP limits across nodes);
 * - stats and close.
 *
 * lib/cluster knows nothing of the server: everything the two share passes through here.
 */
import { ClusterBridge, RelayAdmission, startCluster } from '../cluster/index.js';
import type { CardRecord, Cluster, ClusterCounters, LocalPeer, PeerCard, RelayAdmissionLimits, RemotePeer } from '../cluster/index.js';
import type { Endpoint } from '../endpoint.js';
import { formatEndpoint } from '../endpoint.js';
import { invalidArgType, invalidArgValue } from '../errors.js';
import { wrapPairKey } from '../protocol/crypto.js';
import type { Message, Msg } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import type { CoordDraft, CoordinationEnd, CoordPeer, CoordRequest, Coordinator } from './coordinator.js';
import type { ServerClusterOptions } from './options.js';
import type { Observation } from './plan.js';

/** A remote peer as the coordinator sees it; `warm`, `rttMs` and the card's lease epoch come from each lookup. */
type RemoteAdapter = CoordPeer & { warm: Observation | undefined; rttMs: number; cardEpoch: string | undefined };

/** Checks the `cluster` option synchronously (with the other options); returns the cluster secret. */
export function validateClusterOption(cluster: unknown, serverSecret: Uint8Array | undefined): Uint8Array | string {
  if (typeof cluster !== 'object' || cluster === null) throw invalidArgType('options.cluster', 'an object', cluster);
  const c = cluster as Partial<ServerClusterOptions>;
  if (c.redis === undefined) throw invalidArgValue('options.cluster.redis', 'is required ("redis://host:port")', c.redis);
  const secret = c.secret ?? serverSecret;
  if (secret === undefined)
    throw invalidArgValue('options.cluster.secret', 'is required for an open server (no options.secret): all nodes share it', undefined);
  if (typeof secret !== 'string' && !(secret instanceof Uint8Array))
    throw invalidArgType('options.cluster.secret', 'a string or Uint8Array', secret);
  return secret;
}

/** A local session as the link sees it. */
export interface LinkSession {
  readonly id: string;
  readonly sessionKey: Uint8Array;
  send(msg: Message): boolean;
  /** Ends the session because its lease was lost (the lease is not released). */
  loseLease(code: string, message: string): void;
}

/** What the link needs from the server. */
export interface LinkServer {
  readonly coordinator: Coordinator;
  /** The registered local session of `id`. */
  local(id: string): LinkSession | undefined;
  /** Load for the node's heartbeats. */
  load(): { peers: number; relaySessions: number };
  log(level: 'info' | 'warn', message: string): void;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);
/** How long a forwarded observe connection is kept at most (the peer closes it when its attempt ends). */
const OBSERVE_HOLD_MS = 60_000;
/** Most `prepare` tokens remembered for forwarding observe connections. */
const MAX_TOKENS = 10_000;
/** `result.detail` of the side an owner node kept out of an attempt planned on an outdated card (both ends here). */
const STALE_CARD = 'ERR_CLUSTER_STALE_CARD The peer registered again after its card was read';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A server node's membership in a cluster. */
export class ClusterLink {
  private readonly adapters = new Map<RemotePeer, RemoteAdapter>();
  /** prepare token (hex) → local peer id, to forward that peer's observe connection. */
  private readonly tokens = new Map<string, string>();
  private readonly releases = new Set<Promise<void>>();
  /** Every adapter handed to the coordinator (to count cross-node dials). */
  private readonly remotes = new WeakSet<CoordPeer>();

  private constructor(
    readonly cluster: Cluster,
    readonly bridge: ClusterBridge,
    /** Where grants send peers to this node's relay. */
    readonly advertise: Endpoint,
    private readonly server: LinkServer,
  ) {}

  /**
   * Joins the cluster for a server listening on `address`.
   * @throws ERR_INVALID_ARG_VALUE (`options.cluster.advertise` on a wildcard address), and what startCluster
   * throws (ERR_CLUSTER_UNAVAILABLE, ERR_CLUSTER_UNSUPPORTED, ERR_CLUSTER_NODE_ID_TAKEN).
   */
  static async start(server: LinkServer, options: ServerClusterOptions, secret: Uint8Array | string, address: Endpoint): Promise<ClusterLink> {
    if (options.advertise === undefined && WILDCARDS.has(address.host))
      throw invalidArgValue('options.cluster.advertise', `is required when listening on ${address.host || 'every address'}`, undefined);
    const advertise = options.advertise ?? formatEndpoint(address);
    let link: ClusterLink | undefined;
    const bridge = new ClusterBridge({
      local: (id) => link?.localPeer(id),
      stale: (id, msg, fromNode) => link?.stale(id, msg, fromNode),
      coordinatorMessage: (coordId, from, msg) => link?.fromRemote(coordId, from, msg),
      remoteGone: (peer) => link?.remoteGone(peer),
    });
    const { redis, nodeId, leaseTtlMs, heartbeatMs, connectTimeoutMs, keyPrefix } = options;
    const cluster = await startCluster(
      {
        redis,
        advertise,
        secret,
        log: (level, message) => server.log(level === 'info' ? 'info' : 'warn', message),
        ...(nodeId !== undefined ? { nodeId } : {}),
        ...(leaseTtlMs !== undefined ? { leaseTtlMs } : {}),
        ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
        ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
        ...(keyPrefix !== undefined ? { keyPrefix } : {}),
      },
      { ...bridge.hooks(), load: () => server.load() },
    );
    bridge.attach(cluster);
    const url = new URL(`tcp://${advertise}`);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    link = new ClusterLink(cluster, bridge, { host, port: Number(url.port) }, server);
    return link;
  }

  /**
   * The coordinator's lookup for an id no local session has: a proxy of the peer on whatever node owns it, with the
   * warm mapping and RTT its node published — at once when this node read that card lately, otherwise after one
   * Redis round trip. Without a current card the dial observes a fresh port on that side, as before.
   */
  lookup(id: string): CoordPeer | Promise<CoordPeer> {
    const rec = this.cluster.peerCard(id);
    if (!(rec instanceof Promise)) return this.carded(id, rec);
    return rec.catch(() => undefined).then((r) => this.carded(id, r));
  }

  /**
   * BridgeServer: `msg` for local peer `id` was planned on an outdated card. The side sits that attempt out: the
   * coordination on `fromNode` hears it failed for this side (and retries on fresh ports); the peer gets the
   * `coord` without the folded attempt, and no warm `prepare`.
   */
  stale(id: string, msg: Message, fromNode: string): Message | undefined {
    if (msg.type !== 'coord' && msg.type !== 'prepare') return msg;
    const { coordId, attempt } = msg;
    const result: Msg<'result'> = { type: 'result', coordId, attempt, outcome: 'error', detail: STALE_CARD, committed: false };
    if (attempt > 0) void this.cluster.bus.toCoordinator(fromNode, coordId, id, result);
    return msg.type === 'coord' ? { ...msg, attempt: 0 } : undefined;
  }

  /** SessionCluster: publishes a local peer's card (a failure costs only the warm start of dials from elsewhere). */
  describe(id: string, card: PeerCard): void {
    void this.cluster.describePeer(id, card).catch(() => undefined);
  }

  /** Registration: claims the id's lease (throws ERR_CLUSTER_UNAVAILABLE / ERR_ID_TAKEN). */
  async claim(id: string): Promise<void> {
    await this.cluster.claimPeer(id);
  }

  /** A registered session ended (not replaced here, not lost by lease): gives the id back. */
  release(id: string): void {
    const p = this.cluster.releasePeer(id).catch(() => undefined);
    this.releases.add(p);
    void p.finally(() => this.releases.delete(p));
  }

  /** The number of local sessions changed. */
  setLocalPeers(n: number): void {
    this.cluster.setLocalPeers(n);
  }

  /** A local peer's coordination message: true when it went to the node running that coordination. */
  fromLocalPeer(peerId: string, msg: Message): boolean {
    return msg.type !== 'connect' && this.bridge.fromLocalPeer(peerId, msg);
  }

  /** The relay's notice for `peerId`, wherever it is registered. */
  notify(peerId: string, msg: Message): void {
    this.bridge.notify(peerId, msg);
  }

  /**
   * The relay's admission hook (RelayService.admission): its per-peer and per-IP limits, counted across every node
   * in Redis's shared slots. The relay asks it after its own per-node checks and releases when a side ends.
   */
  relayAdmission(limits: RelayAdmissionLimits): RelayAdmission {
    return new RelayAdmission(this.cluster.limits, limits);
  }

  /**
   * An observe connection the local coordinator does not know: if it belongs to a coordination running on
   * another node, answer it and forward the observation there. False when it belongs to none.
   */
  observe(conn: FramedSocket, msg: Msg<'observe'>, remote: Endpoint): boolean {
    const node = this.bridge.routes.get(msg.coordId);
    const key = hex(msg.token);
    const peerId = this.tokens.get(key);
    if (!node || !peerId) return false;
    this.tokens.delete(key);
    const forwarded: Msg<'observe'> = { ...msg, private: [remote, ...msg.private].slice(0, 4) };
    void this.cluster.bus.toCoordinator(node, msg.coordId, peerId, forwarded);
    conn.send({ type: 'observed', endpoint: remote });
    const timer = setTimeout(() => conn.end(), OBSERVE_HOLD_MS);
    timer.unref();
    conn.on('close', () => clearTimeout(timer));
    return true;
  }

  /** A coordination ended: counted as a cross-node dial when one side is a remote peer. */
  coordinationEnded(end: CoordinationEnd, peers: readonly CoordPeer[]): void {
    if (peers.some((p) => this.remotes.has(p))) this.cluster.recordCrossNodeDial(end.outcome === 'ok' ? 'ok' : end.code);
  }

  /** The cluster's counters. */
  stats(): ClusterCounters {
    return this.cluster.stats();
  }

  /** Leaves the cluster once the releases of closed sessions have been sent. */
  async close(): Promise<void> {
    await Promise.race([Promise.all(this.releases), new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.cluster.close();
  }

  /** The bridge's view of a local session; remembers `prepare` tokens so the peer's observe can be forwarded. */
  private localPeer(id: string): LocalPeer | undefined {
    const s = this.server.local(id);
    if (!s) return undefined;
    return {
      id: s.id,
      sessionKey: s.sessionKey,
      fail: (code, message) => s.loseLease(code, message), // the bridge fails a session only when its lease was lost
      send: (m) => {
        if (m.type === 'prepare' && m.port === 'fresh') {
          if (this.tokens.size >= MAX_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
          this.tokens.set(hex(m.token), id);
        }
        return s.send(m);
      },
    };
  }

  /** A remote side's message for a coordination running here. */
  private fromRemote(coordId: Uint8Array, from: RemotePeer, msg: Message): void {
    const peer = this.adapterOf(from);
    if (msg.type === 'observe') {
      const [observed, ...priv] = msg.private;
      if (!observed) return;
      const stub = { send: () => true, end: () => undefined } as unknown as FramedSocket;
      this.server.coordinator.observe(stub, { ...msg, coordId, private: priv }, observed);
      return;
    }
    if (msg.type === 'result' && msg.detail === STALE_CARD) this.cluster.forgetCard(from.id);
    if (msg.type === 'result' || msg.type === 'cancel' || msg.type === 'release')
      this.server.coordinator.handle(peer, msg as CoordRequest);
  }

  private remoteGone(proxy: RemotePeer): void {
    this.cluster.forgetCard(proxy.id);
    const peer = this.adapters.get(proxy);
    this.adapters.delete(proxy);
    if (peer) this.server.coordinator.peerGone(peer);
  }

  /** The coordinator's peer for `id` with what its card says (none: no warm port, RTT unknown). */
  private carded(id: string, rec: CardRecord | undefined): CoordPeer {
    const peer = this.adapterOf(this.bridge.remote(id));
    peer.warm = rec?.card.warm;
    peer.rttMs = rec?.card.rttMs ?? 0;
    peer.cardEpoch = rec?.epoch;
    return peer;
  }

  /**
   * One CoordPeer per RemotePeer object: the coordinator tells sides apart by identity. What is planned on the
   * peer's warm port (a folded attempt, a warm `prepare`) goes with its card's epoch, for the owner to check.
   */
  private adapterOf(proxy: RemotePeer): RemoteAdapter {
    let peer = this.adapters.get(proxy);
    if (peer) return peer;
    const adapter: RemoteAdapter = {
      id: proxy.id,
      warm: undefined,
      rttMs: 0,
      cardEpoch: undefined,
      send: (msg: Message) => proxy.send(msg, msg.type === 'prepare' && msg.port === 'warm' ? adapter.cardEpoch : undefined),
      sendCoord: (msg: CoordDraft, pairKey: Uint8Array) =>
        proxy.send({ ...msg, pairKey: wrapPairKey(proxy.sessionKey, msg.coordId, pairKey) }, msg.attempt > 0 ? adapter.cardEpoch : undefined),
    };
    peer = adapter;
    this.adapters.set(proxy, peer);
    this.remotes.add(peer);
    return peer;
  }
}
