/**
 * Public types of the Peer API.
 */
import type { Socket } from 'node:net';
import type { UpgradableStream } from '../upgrade.js';

import type { Endpoint } from '../endpoint.js';
import type { NAT_FILTERINGS, NAT_MAPPINGS, RelayMsg, ROLES } from '../protocol/messages.js';

/** Which side of a dial a peer is on; assigned by the server (the dialer is the initiator). */
export type Role = (typeof ROLES)[number];
/** This network's NAT mapping as the peer measured it (see `PeerOptions.natProbe`). */
export type NatMapping = (typeof NAT_MAPPINGS)[number];
/** This network's inbound filtering as the peer measured it (see `PeerOptions.natProbe`). */
export type NatFiltering = (typeof NAT_FILTERINGS)[number];

/** How an attempt ended. `ok` on success; otherwise why it failed. */
export type AttemptOutcome =
  | 'ok'
  /** No connection (or no handshake) before the attempt's deadline. */
  | 'timeout'
  /** The connection was reset (a RST during the punch or the handshake). */
  | 'rst'
  /** Every SYN was refused (RST or ICMP unreachable) until the deadline. */
  | 'refused'
  /** The socket's far end failed the authenticated handshake (a stranger, or a mismatched attempt). */
  | 'auth-failed'
  /** The other peer is not registered, or went offline during the dial. */
  | 'peer-offline'
  /** A local failure: binding the port, the observe connection, the control connection... */
  | 'error'
  /** The dial was cancelled (signal, deadline, or the other side cancelled). */
  | 'aborted';

/** Emitted as `attempt` for each attempt (and for a dial rejected before any attempt, with `attempt: 0`). */
export interface AttemptEvent {
  /** The other peer. */
  peerId: string;
  /** The coordination's id (hex), empty when the server rejected the dial outright. */
  coordId: string;
  role: Role;
  /** 1-based attempt number; 0 when the dial failed before any attempt. */
  attempt: number;
  /** `reverse`: connection reversal (no sync); `sync`: simultaneous open at the synchronised moment; `relay`. */
  mode: 'sync' | 'reverse' | 'relay' | undefined;
  /** Which of the other side's endpoints was punched towards. */
  route: 'public' | 'private' | 'hairpin' | undefined;
  /** The endpoint punched towards, once known. */
  remote: Endpoint | undefined;
  /** The IP version the attempt ran in (dual-stack: IPv6 first); undefined for the relay or before any attempt. */
  family: 4 | 6 | undefined;
  outcome: AttemptOutcome;
  /** The error code behind a failure (`ETIMEDOUT`, `ECONNREFUSED`, `ERR_AUTH_FAILED`, ...). */
  code: string | undefined;
  message: string;
  /** From the server's `prepare` to the outcome. */
  elapsedMs: number;
}

/** Durations of a successful dial, in ms. */
export interface DialTimings {
  /** From `dial()` (or the incoming `coord`) to the connected, authenticated socket. */
  totalMs: number;
  /** Of the successful attempt: binding the port and the observe round trip. */
  observeMs: number;
  /** Of the successful attempt: the synchronisation delay the server asked for. */
  delayMs: number;
  /** Of the successful attempt: punch() itself. */
  punchMs: number;
  /** Of the successful attempt: the direct-auth exchange. */
  handshakeMs: number;
}

/** How a relayed session ended, as the relay reported it on the control connection. */
export interface RelayEndInfo {
  sessionId: string;
  /** `eof` for a clean end; `limit-bytes`, `limit-duration`, `stopped`, `reset`, `error`, `join-timeout`... */
  reason: string;
  /** ERR_RELAY_LIMIT_BYTES, ERR_RELAY_LIMIT_DURATION, an errno name, or '' for a clean end. */
  code: string;
  /** Bytes the relay delivered from this peer to the other, and back. */
  bytesSent: number;
  bytesReceived: number;
}

/** What `peer.dial()` resolves to. */
export interface DialResult {
  /**
   * The connected stream. A `net.Socket` for `direct` and `relay` dials; an {@link UpgradableStream} for
   * `relay-first` dials (it starts on the relay and moves to a direct connection when one is punched: see its
   * `path` and `upgrade` event). Attach an 'error' listener. On every path the stream allows half-open: the
   * other peer's `end()` ends only your reading side, so call `end()` (or `destroy()`) when you are done.
   */
  socket: Socket | UpgradableStream;
  /** Which path carried the stream when the dial resolved. */
  path: 'direct' | 'relay';
  role: Role;
  /** The other peer's id. */
  peerId: string;
  /** The other side's address as this socket sees it. */
  remote: Endpoint;
  /** The attempt that succeeded (1-based). */
  attempt: number;
  /** How it was reached: connection reversal, synchronised simultaneous open, or the relay. */
  mode: 'sync' | 'reverse' | 'relay';
  /**
   * The IP version the stream runs over: of the punched socket (`direct`), or of this side's connection to the
   * relay (`relay`). A dual-stack pair tries IPv6 first (`PeerOptions.dualStackServer`).
   */
  family: 4 | 6;
  timings: DialTimings;
  /**
   * Relayed streams: resolves with how the relay ended the session (limits included), once the server says so;
   * resolves undefined if the control connection goes away first. A relay ends every abnormal session with a RST,
   * but Node may report a RST behind unread data as a plain 'end': check `reason === 'eof'` before trusting an end.
   */
  relayEnd?: Promise<RelayEndInfo | undefined>;
}

/** Second argument of the `connection` event. */
export type ConnectionInfo = Omit<DialResult, 'socket'>;

/** Describes an incoming dial to the `accept` option. */
export interface IncomingDial {
  /** The dialing peer's id. */
  peerId: string;
  path: 'direct' | 'relay';
}

/**
 * Options of `peer.dial()`. `S` names the custom strategies of `PeerOptions.strategies` (a `Peer` created with
 * them passes their names on), so a misspelt strategy name fails the type check.
 */
export interface DialOptions<S extends string = never> {
  /** Overall deadline; default 15000 ms (the server may cap it). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** `direct-first` (default: punch, then the relay), `relay-first`, `direct`, `relay`, or one of `options.strategies`. */
  strategy?: BuiltinStrategy | S;
}

/** Options of `Peer.connect()`; `S`: the names of `strategies`. */
export interface PeerOptions<S extends string = never> {
  /**
   * The rendezvous server, `host:port` (`[v6]:port`) or an endpoint; or a list of them (the nodes of a cluster,
   * docs/CLUSTER.md): the peer registers with the first that answers and moves to the next when it loses it.
   */
  server: string | Endpoint | readonly (string | Endpoint)[];
  /** This peer's id: 1..64 printable ASCII characters without spaces. */
  id: string;
  /** The server's shared secret (the peer derives its id key from it). */
  secret?: string | Uint8Array;
  /** Alternatively the id key an operator derived for this id (`deriveIdKey(secret, id)`). */
  idKey?: Uint8Array;
  /** Open servers: the token issued at a previous registration (see `peer.token`), to reclaim the id. */
  token?: Uint8Array;
  /**
   * Dual-stack: the same server's address in the other IP family, e.g. `'[2001:db8::2]:7000'` next to
   * `server: '198.18.0.2:7000'` (the server listening on both, `host: '::'`). After registering, the peer registers
   * this family too from a connection of that family (from its permanent global address, never a temporary one),
   * and dials with a peer that has both families try IPv6 first, from that exact address; the control family
   * follows if it fails. `DialResult.family` says which won. A failed second registration leaves the peer
   * registered in the first family (see the `family` event).
   */
  dualStackServer?: string | Endpoint;
  /** Local address for the control connection and every punch port. */
  localAddress?: string;
  /** Deadline of each connection to the server (first connect and reconnects); default 10000 ms. */
  connectTimeoutMs?: number;
  /** Reconnect with exponential backoff when the server goes away; default `{ minDelayMs: 250, maxDelayMs: 10000 }`. */
  reconnect?: boolean | { minDelayMs?: number; maxDelayMs?: number };
  /**
   * Decides on incoming dials (resolve `true` to accept); default: accept all while a `connection` listener is
   * attached. A refused dialer gets `ERR_PEER_REFUSED`. Nothing of the attempt runs before the decision.
   */
  accept?: (dial: IncomingDial) => boolean | Promise<boolean>;
  /** Passed to punch(). */
  punch?: { retryDelayMs?: number; ttl?: number };
  /**
   * The NAT probe: after each (re)connect, measure this network's NAT mapping against the two probe ports the
   * server announces (`startServer()` and `tcp-punch serve` open them by default) and report it to the server,
   * which then skips punching that cannot work (a symmetric NAT against a peer that is not directly reachable:
   * `ERR_PUNCH_UNLIKELY`), so `direct-first` moves to the relay at once instead of after its punch budget.
   * `{ ports, host? }` probes other ports (`host` defaults to the server's address); `false` turns it off. A failed
   * probe only leaves the mapping unknown (punching as usual). Default: the server's announced ports.
   */
  natProbe?: false | { ports: [number, number]; host?: string };
  /** Additional dial strategies by name (see {@link DialStrategy}). */
  strategies?: Record<S, DialStrategy>;
}

/** What a dial strategy can use of the dialing peer (a `Peer` is one). */
export interface DialPeer {
  readonly id: string;
  /** The server's numeric endpoint while connected. */
  readonly server: Endpoint | undefined;
  /** Sends a relay-range message on the control connection; false while offline. */
  sendRelayMessage(msg: RelayMsg): boolean;
  /** Relay-range messages from the server. */
  on(event: 'relay-message', listener: (msg: RelayMsg) => void): unknown;
  off(event: 'relay-message', listener: (msg: RelayMsg) => void): unknown;
  /** Tells the application that a relay-first stream moved to its direct connection. */
  emit(event: 'upgrade', info: { peerId: string; coordId: string; role: Role }): boolean;
}

/** The names of the built-in strategies (`PeerOptions.strategies` adds others). */
export type BuiltinStrategy = 'direct-first' | 'relay-first' | 'direct' | 'relay';

/** What a dial strategy can use. */
export interface DialContext {
  /** The dialing peer: its relay channel (`sendRelayMessage`, `relay-message`), `server`, the `upgrade` event. */
  readonly peer: DialPeer;
  readonly peerId: string;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /**
   * Runs the server-coordinated direct connection (all its attempts) within `timeoutMs` (default: the dial's
   * deadline). `link` names a relay-upgradable dial's coordination this one upgrades.
   */
  direct(options?: { timeoutMs?: number; link?: string; signal?: AbortSignal }): Promise<DialResult>;
  /** Connects through the server's relay; `upgradable` lets the stream move to a direct connection later. */
  relay(options?: { timeoutMs?: number; upgradable?: boolean }): Promise<DialResult & { coordId: string }>;
}

/** A way of reaching a peer; `direct` is built in, the relay adds its own. */
export interface DialStrategy {
  dial(ctx: DialContext): Promise<DialResult>;
}
