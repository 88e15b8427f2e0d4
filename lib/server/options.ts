/**
 * Options of the rendezvous server, their defaults (suited to a public server) and their validation.
 */
import type { Socket } from 'node:net';

import { invalidArgType, outOfRange } from '../errors.js';
import { DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE } from '../protocol/frame.js';
import type { Endpoint } from '../endpoint.js';
import type { Message, RelayMsg } from '../protocol/messages.js';
import type { Registry } from '../registry.js';
import type { RedisTarget } from '../cluster/index.js';
import type { RelayLimits } from '../relay/limits.js';
import type { Pump, PumpKind } from '../relay/pump.js';

/** `ServerOptions.cluster`: this node's part in a cluster of nodes sharing one Redis (docs/CLUSTER.md). */
export interface ServerClusterOptions {
  /** The cluster's Redis: `redis://[:password@]host:port[/db]` (or ioredis options, e.g. Sentinel). */
  redis: RedisTarget;
  /** This node's id, unique in the cluster (1..64 of `A-Z a-z 0-9 . _ -`); default a random one. */
  nodeId?: string;
  /** `host:port` peers and other nodes reach this node at; default the listen address (required on a wildcard). */
  advertise?: string;
  /**
   * The secret all nodes share; default the server's `secret`. An open server (no `secret`) must set this one.
   */
  secret?: string | Uint8Array;
  /** Timers for tests and tuning (see ClusterOptions in lib/cluster/cluster.ts). */
  leaseTtlMs?: number;
  heartbeatMs?: number;
  connectTimeoutMs?: number;
  keyPrefix?: string;
  /** Where the cluster's log lines go (lease losses, nodes up and down, Redis lost and back); default nowhere. */
  log?: (level: 'info' | 'warn', message: string) => void;
}

/** What a relay-range message handler on a control connection can do. */
export interface ControlContext {
  /** The registered id of the peer that sent the message. */
  readonly peerId: string;
  /** Sends a message on the peer's control connection; false once it is closing. */
  send(msg: Message): boolean;
  /** Sends an `error` frame and closes the control connection. */
  fail(code: string, message: string): void;
}

/** Hooks through which the relay plugs into the server's port. */
export interface RelayHooks {
  /**
   * A connection's first frame was `relay-join` (type 0x40). The server has stopped reading the socket and
   * forgotten it (it still counts it towards the per-IP connection limit until it closes): `rest` holds any bytes
   * that arrived after the join frame. The handler owns the socket from now on.
   */
  onRelayJoin?(socket: Socket, join: RelayMsg, rest: Buffer, info: { remote: Endpoint }): void;
  /** A registered peer sent a relay-range message (0x40..0x4f) on its control connection. */
  onControlMessage?(ctx: ControlContext, msg: RelayMsg): void;
}

/** Options of {@link startServer}. Every limit has a default suited to a public server. */
export interface ServerOptions {
  /** Address to listen on; default: all addresses (Node's default, dual-stack where available). */
  host?: string;
  /** Port to listen on; default 0 (the system picks one; see `address()`). */
  port?: number;
  /**
   * The NAT probe listeners peers measure their NAT mapping against (announced in `welcome`; a peer then skips
   * punches that cannot work, `ERR_PUNCH_UNLIKELY`): default on, at `port` + 1 and + 2 (system-chosen ports when
   * `port` is 0). `false` turns them off; `{ ports }` puts them elsewhere (0 = system-chosen).
   */
  natProbe?: false | { ports: [number, number] };
  /**
   * Shared secret. When set, peers authenticate with `HMAC(secret, id)` derived keys (docs/PROTOCOL.md);
   * when absent the server is open: an id belongs to its first registrant, who proves a server-issued token.
   */
  secret?: string | Uint8Array;
  /** Where id credentials live; default an in-memory registry. */
  registry?: Registry;
  /** Largest accepted frame body in bytes (default 4096, at most 65535). */
  maxFrameSize?: number;
  /** Time a new connection has to complete its handshake (auth, or its observe frame); default 5000 ms. */
  handshakeTimeoutMs?: number;
  /** A registered peer that sends nothing for this long is disconnected; default 60000 ms. */
  idleTimeoutMs?: number;
  /** Keepalive interval the server asks peers to use; default 20000 ms. */
  keepaliveMs?: number;
  /** Maximum simultaneous connections; default 10000. */
  maxConnections?: number;
  /** Maximum simultaneous connections from one IP address; default 256. */
  maxConnectionsPerIp?: number;
  /** New connections per second allowed from one IP (token bucket refill); default 50. */
  connectionRatePerIp?: number;
  /** Burst of new connections allowed from one IP; default 200. */
  connectionBurstPerIp?: number;
  /** Frames per second allowed on one connection (token bucket refill); default 200. */
  frameRate?: number;
  /** Burst of frames allowed on one connection; default 500. */
  frameBurst?: number;
  /** Coordinations one peer may take part in at once (either side); default 64. */
  maxPendingPerPeer?: number;
  /** Coordinations in flight on the whole server; default 4096. */
  maxCoordinations?: number;
  /** Punch attempts per dial, each with a fresh port and a fresh sync; default 3. */
  maxAttempts?: number;
  /** Time allowed for the punch of one attempt; default 5000 ms. */
  attemptTimeoutMs?: number;
  /** Dial deadline used when the dialer asks for none; default 15000 ms. */
  defaultDialTimeoutMs?: number;
  /** Upper bound of a dial deadline a peer may ask for; default 60000 ms. */
  maxDialTimeoutMs?: number;
  /** Open mode: how long an offline id stays reserved for the holder of its token; default 600000 ms. */
  idReservationMs?: number;
  /** How long `close()` waits for coordinations in flight; default 10000 ms. */
  closeTimeoutMs?: number;
  /** Try connection reversal (no sync, the reachable side is dialled) first when a side is reachable; default true. */
  reversal?: boolean;
  /**
   * The relay on the server's port. Default: a built-in relay with the limits of `relayDefaults()` for the
   * server's mode (no byte or duration cap per session with a `secret`, `RELAY_DEFAULTS` when open); pass its
   * options to change them, `false` to run no relay (relayed dials get `ERR_PATH_UNSUPPORTED`), or custom
   * {@link RelayHooks} to plug in a relay of your own.
   */
  relay?: false | ServerRelayOptions | RelayHooks;
  /**
   * Cluster mode: this server is one node of several sharing one Redis (docs/CLUSTER.md). Peers register with any
   * node and dial peers on every node; open servers share the id registry. Without it nothing uses Redis.
   */
  cluster?: ServerClusterOptions;
}

/** Options of the server's built-in relay. */
export interface ServerRelayOptions {
  /** Limits per session, per peer, per IP and in all; unset ones take `relayDefaults()` of the server's mode. */
  limits?: Partial<RelayLimits>;
  /** The pump: 'auto' (native where available, the default), 'native', 'js', or a Pump. */
  pump?: Pump | PumpKind;
  /** Secret signing relay tokens; default random per server. Share it with relays in other processes. */
  tokenSecret?: string | Uint8Array;
}

/** True when `relay` is a set of custom hooks rather than the built-in relay's options. */
export function isRelayHooks(relay: ServerOptions['relay']): relay is RelayHooks {
  return typeof relay === 'object' && relay !== null && ('onRelayJoin' in relay || 'onControlMessage' in relay);
}

/** Options after defaults, as the server modules use them. */
export interface ResolvedOptions {
  host: string | undefined;
  port: number;
  secret: Uint8Array | undefined;
  maxFrameSize: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  keepaliveMs: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  connectionRatePerIp: number;
  connectionBurstPerIp: number;
  frameRate: number;
  frameBurst: number;
  maxPendingPerPeer: number;
  maxCoordinations: number;
  maxAttempts: number;
  attemptTimeoutMs: number;
  defaultDialTimeoutMs: number;
  maxDialTimeoutMs: number;
  idReservationMs: number;
  closeTimeoutMs: number;
  reversal: boolean;
  /** Probe ports to open (0: system-chosen), or undefined for none. */
  natProbe: [number, number] | undefined;
  relay: RelayHooks;
}

/** Defaults of every numeric limit. */
export const SERVER_DEFAULTS = {
  maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
  handshakeTimeoutMs: 5000,
  idleTimeoutMs: 60_000,
  keepaliveMs: 20_000,
  maxConnections: 10_000,
  maxConnectionsPerIp: 256,
  connectionRatePerIp: 50,
  connectionBurstPerIp: 200,
  frameRate: 200,
  frameBurst: 500,
  maxPendingPerPeer: 64,
  maxCoordinations: 4096,
  maxAttempts: 3,
  attemptTimeoutMs: 5000,
  defaultDialTimeoutMs: 15_000,
  maxDialTimeoutMs: 60_000,
  idReservationMs: 600_000,
  closeTimeoutMs: 10_000,
} as const;

/** The accepted range of each numeric option, inclusive. */
export const RANGES: Record<keyof typeof SERVER_DEFAULTS, [number, number]> = {
  maxFrameSize: [256, MAX_FRAME_SIZE],
  handshakeTimeoutMs: [1, 600_000],
  idleTimeoutMs: [1, 86_400_000],
  keepaliveMs: [1, 86_400_000],
  maxConnections: [1, 1_000_000],
  maxConnectionsPerIp: [1, 1_000_000],
  connectionRatePerIp: [0.001, 1_000_000],
  connectionBurstPerIp: [1, 1_000_000],
  frameRate: [0.001, 1_000_000],
  frameBurst: [1, 1_000_000],
  maxPendingPerPeer: [1, 65_535],
  maxCoordinations: [1, 1_000_000],
  maxAttempts: [1, 10],
  attemptTimeoutMs: [100, 600_000],
  defaultDialTimeoutMs: [100, 600_000],
  maxDialTimeoutMs: [100, 600_000],
  idReservationMs: [0, 365 * 86_400_000],
  closeTimeoutMs: [0, 600_000],
};

/** Applies defaults and validates; throws ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE. */
export function resolveOptions(options: ServerOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SERVER_DEFAULTS) as (keyof typeof SERVER_DEFAULTS)[]) {
    const v = options[key] ?? SERVER_DEFAULTS[key];
    if (typeof v !== 'number') throw invalidArgType(`options.${key}`, 'of type number', v);
    const [min, max] = RANGES[key];
    const integral = key !== 'connectionRatePerIp' && key !== 'frameRate';
    if (!(v >= min && v <= max) || (integral && !Number.isInteger(v)))
      throw outOfRange(`options.${key}`, `${integral ? 'an integer' : 'a number'} in ${min}..${max}`, v);
    out[key] = v;
  }
  const { host, port = 0, secret, reversal = true } = options;
  const relay = isRelayHooks(options.relay) ? options.relay : {};
  if (host !== undefined && typeof host !== 'string') throw invalidArgType('options.host', 'of type string', host);
  if (typeof port !== 'number') throw invalidArgType('options.port', 'of type number', port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw outOfRange('options.port', 'an integer in 0..65535', port);
  let key: Uint8Array | undefined;
  if (secret !== undefined) {
    if (typeof secret === 'string') key = Buffer.from(secret, 'utf8');
    else if (secret instanceof Uint8Array) key = Uint8Array.from(secret);
    else throw invalidArgType('options.secret', 'a string or Uint8Array', secret);
    if (key.length === 0) throw outOfRange('options.secret', 'at least 1 byte long', secret);
  }
  if (typeof reversal !== 'boolean') throw invalidArgType('options.reversal', 'of type boolean', reversal);
  if (options.relay !== undefined && options.relay !== false && (typeof options.relay !== 'object' || options.relay === null))
    throw invalidArgType('options.relay', 'false, relay options or relay hooks', options.relay);
  return { ...(out as typeof SERVER_DEFAULTS), host, port, secret: key, reversal, natProbe: resolveNatProbe(options.natProbe, port), relay } as ResolvedOptions;
}

/** The probe ports of `natProbe` for a server on `port`: PORT+1, PORT+2 by default, system-chosen for port 0. */
function resolveNatProbe(probe: ServerOptions['natProbe'], port: number): [number, number] | undefined {
  if (probe === false) return undefined;
  if (probe === undefined) {
    if (port === 0) return [0, 0];
    if (port + 2 > 65535) throw outOfRange('options.natProbe', `explicit ports: the default ${port}+1, ${port}+2 exceed 65535`, port);
    return [port + 1, port + 2];
  }
  if (typeof probe !== 'object' || probe === null || !Array.isArray(probe.ports) || probe.ports.length !== 2)
    throw invalidArgType('options.natProbe', 'false or { ports: [number, number] }', probe);
  probe.ports.forEach((p, i) => {
    if (typeof p !== 'number') throw invalidArgType(`options.natProbe.ports[${i}]`, 'of type number', p);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw outOfRange(`options.natProbe.ports[${i}]`, 'an integer in 0..65535', p);
  });
  if (probe.ports[0] !== 0 && probe.ports[0] === probe.ports[1]) throw outOfRange('options.natProbe.ports', 'two different ports', probe.ports);
  return [probe.ports[0], probe.ports[1]];
}
