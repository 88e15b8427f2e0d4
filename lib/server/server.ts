/**
 * The rendezvous server: one TCP port for control, observe and relay connections.
 *
 * Every connection is admitted against the global and per-IP limits, then must send its first frame within the
 * handshake deadline; that frame's type routes it: `hello` → a control session, `observe` → the coordinator,
 * `relay-join` → the relay hook. Each connection has its own frame-rate bucket; anything invalid gets an `error`
 * frame with a code and is closed, without affecting other connections.
 */
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { enableFastOpen } from '../fast-open.js';
import { unmapAddress } from '../protocol/fields.js';
import { registerFamily } from './families.js';
import type { Endpoint } from '../endpoint.js';
import { startProbeServer } from '../nat-check/probe-server.js';
import type { ProbeServer } from '../nat-check/probe-server.js';
import type { Message, RelayMsg } from '../protocol/messages.js';
import { FramedSocket } from '../protocol/stream.js';
import { Coordinator, type CoordinationEnd } from './coordinator.js';
import { IpTable, TokenBucket } from './limits.js';
import { isRelayHooks, resolveOptions } from './options.js';
import type { ResolvedOptions, ServerOptions } from './options.js';
import { relayDefaults, resolveLimits } from '../relay/limits.js';
import { RelayService, type RelayStats } from '../relay/relay-service.js';
import { random } from '../protocol/crypto.js';
import { MemoryRegistry } from '../registry.js';
import type { Registry } from '../registry.js';
import { ControlSession } from './session.js';
import type { SessionHost } from './session.js';
import { ClusterLink, validateClusterOption } from './cluster-link.js';
import type { ServerClusterOptions } from './options.js';
import type { ClusterCounters } from '../cluster/index.js';

/** A snapshot of the server's state and counters. */
export interface ServerStats {
  /** Open connections of every kind (relay connections handed to the relay hook are not counted). */
  connections: number;
  /** Registered peers. */
  peers: number;
  /** Dials being coordinated. */
  coordinations: number;
  /** Counters since start. */
  totals: {
    connections: number;
    /** Connections refused by `maxConnections`, `maxConnectionsPerIp` or `connectionRatePerIp`. */
    refused: number;
    coordinations: number;
    succeeded: number;
    failed: number;
    cancelled: number;
    attempts: number;
    /** Attempts in which both sides punched from their warm ports (no observe connection). */
    warmAttempts: number;
  };
  /** Connections that ended with an error, by code (the codes of `error` frames sent, and socket errors). */
  errors: Record<string, number>;
  /** The built-in relay's state, when it runs. */
  relay: RelayStats | undefined;
  /** Cluster mode: this node's cluster counters (docs/CLUSTER.md, "Metrics"); undefined without `cluster`. */
  cluster: ClusterCounters | undefined;
}

interface Conn {
  readonly framed: FramedSocket;
  readonly remote: Endpoint;
  readonly bucket: TokenBucket;
  kind: 'new' | 'control' | 'observe' | 'relay';
  session: ControlSession | undefined;
  handshakeTimer: NodeJS.Timeout | undefined;
}

/** Events of a {@link RendezvousServer}. */
export interface RendezvousServerEvents {
  /** A coordinated dial ended (for metrics and logs). */
  coordination: [end: CoordinationEnd];
}

/** A running rendezvous server; create one with {@link startServer}. */
export class RendezvousServer extends EventEmitter<RendezvousServerEvents> implements SessionHost {
  /** @internal The resolved options (for the server's own modules). */
  readonly options: ResolvedOptions;
  /** @internal */
  registry: Registry;
  /** @internal Cluster mode: the link to the other nodes (set by startServer once joined). */
  cluster: ClusterLink | undefined;
  private readonly clusterSecret: Uint8Array | string | undefined;
  private readonly clusterOptions: ServerClusterOptions | undefined;
  private readonly ownRegistry: boolean;
  /** Cluster mode, until joined (after listen): connections are refused meanwhile. */
  private joining: boolean;
  /** @internal */
  readonly coordinator: Coordinator;
  /** The built-in relay (undefined with `relay: false` or custom hooks). */
  readonly relay: RelayService | undefined;
  private readonly server: Server;
  private readonly ips: IpTable;
  private readonly conns = new Map<FramedSocket, Conn>();
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Map<string, ControlSession>();
  private readonly totals = { connections: 0, refused: 0 };
  private readonly errors: Record<string, number> = {};
  private closePromise: Promise<void> | undefined;
  private probes: ProbeServer | undefined;
  private listening = true;
  private socketsGone: (() => void) | undefined;

  /** @internal Use {@link startServer}. */
  constructor(options: ServerOptions) {
    super();
    const resolved = resolveOptions(options);
    if (options.registry !== undefined && (typeof options.registry !== 'object' || options.registry === null))
      throw new TypeError('options.registry must implement Registry');
    this.registry = options.registry ?? new MemoryRegistry();
    this.ownRegistry = options.registry !== undefined;
    this.clusterOptions = options.cluster;
    this.joining = options.cluster !== undefined;
    this.clusterSecret = options.cluster === undefined ? undefined : validateClusterOption(options.cluster, resolved.secret);
    const relayOptions = options.relay;
    if (relayOptions !== false && !isRelayHooks(relayOptions)) {
      const { limits, pump, tokenSecret } = relayOptions ?? {};
      this.relay = new RelayService({
        secret: tokenSecret ?? random(32),
        limits: resolveLimits(limits, relayDefaults(resolved.secret ? 'secret' : 'open')),
        ...(pump ? { pump } : {}),
        // Why a relayed session ended reaches each peer on its control connection.
        notify: (peerId, msg) => (this.cluster ? this.cluster.notify(peerId, msg) : void this.sessions.get(peerId)?.send(msg)),
      });
      this.options = { ...resolved, relay: this.relay.hooks() };
    } else {
      this.options = resolved;
    }
    const relay = this.relay;
    this.coordinator = new Coordinator(
      this.options,
      (id) => this.sessions.get(id) ?? this.cluster?.lookup(id),
      // In a cluster the other side may be on another node: every grant names this node's relay.
      relay && ((pair) => relay.grants(relay.issueTokens(pair), pair, this.cluster ? { relay: [this.cluster.advertise] } : {})),
      (end, peers) => {
        this.cluster?.coordinationEnded(end, peers);
        this.emit('coordination', end);
      },
    );
    this.ips = new IpTable(this.options.maxConnectionsPerIp, this.options.connectionRatePerIp, this.options.connectionBurstPerIp);
    this.server = createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  /** True once {@link close} has begun. */
  get closing(): boolean {
    return this.closePromise !== undefined;
  }

  /** The NAT probe ports announced to peers, once listening (undefined with `natProbe: false`). */
  get probePorts(): readonly [number, number] | undefined {
    return this.probes && [this.probes.ports[0]!, this.probes.ports[1]!];
  }

  /** @internal */
  async listen(): Promise<void> {
    await this.listenControl();
    await this.openProbes();
    if (this.clusterSecret === undefined) return;
    try {
      await this.joinCluster(this.clusterSecret);
    } catch (err) {
      this.listening = false;
      await new Promise((resolve) => this.server.close(resolve));
      for (const conn of this.conns.values()) conn.framed.end();
      await this.probes?.close();
      this.ips.close();
      throw err;
    } finally {
      this.joining = false;
    }
  }

  private async joinCluster(secret: Uint8Array | string): Promise<void> {
    const options = this.clusterOptions!;
    this.cluster = await ClusterLink.start(
      {
        coordinator: this.coordinator,
        local: (id) => this.sessions.get(id),
        load: () => ({ peers: this.sessions.size, relaySessions: this.relay?.stats().active ?? 0 }),
        log: (level, message) => options.log?.(level, message),
      },
      options,
      secret,
      { host: this.address().address, port: this.address().port },
    );
    // The relay's per-peer and per-IP limits hold cluster-wide. Set before any join: connections are refused until
    // this method returns.
    if (this.relay) this.relay.admission = this.cluster.relayAdmission(this.relay.limits);
    // Open servers: the id registry is the cluster's (ERR_ID_TAKEN holds cluster-wide), unless one was given.
    if (!this.ownRegistry) this.registry = this.cluster.cluster.registry;
  }

  private async openProbes(): Promise<void> {
    const ports = this.options.natProbe;
    if (!ports) return;
    try {
      this.probes = await startProbeServer({ ...(this.options.host ? { host: this.options.host } : {}), ports });
    } catch (err) {
      await new Promise((resolve) => this.server.close(resolve));
      this.ips.close();
      const e = err as NodeJS.ErrnoException;
      throw new TcpPunchError(e.code ?? 'ERR_LISTEN', `Cannot open the NAT probe ports ${ports.join(', ')} (options.natProbe): ${e.message}`, { cause: err });
    }
  }

  private listenControl(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.ips.close();
        reject(new TcpPunchError(err.code ?? 'ERR_LISTEN', `Cannot listen: ${err.message}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.removeListener('error', onError);
        enableFastOpen(this.server); // relay joins on this port may ride in their SYN (see fast-open.ts)
        this.server.on('error', () => undefined); // accept errors (EMFILE...) must not crash the process
        resolve();
      });
    });
  }

  /** The address the server listens on. */
  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Current state and counters. */
  stats(): ServerStats {
    const c = this.coordinator.stats;
    return {
      connections: this.sockets.size,
      peers: this.sessions.size,
      coordinations: this.coordinator.size,
      totals: {
        ...this.totals,
        coordinations: c.started,
        succeeded: c.succeeded,
        failed: c.failed,
        cancelled: c.cancelled,
        attempts: c.attempts,
        warmAttempts: c.warmAttempts,
      },
      errors: { ...this.errors },
      relay: this.relay?.stats(),
      cluster: this.cluster?.stats(),
    };
  }

  /**
   * Graceful shutdown: refuses new registrations and dials (`ERR_SERVER_CLOSING`), sends `goaway` to registered
   * peers, lets dials in flight finish (their observe connections are still accepted; after `closeTimeoutMs` they
   * end with `ERR_SERVER_CLOSING`), then stops listening and closes every connection. Idempotent.
   */
  close(): Promise<void> {
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  /** @internal SessionHost */
  current(id: string): ControlSession | undefined {
    return this.sessions.get(id);
  }

  /** @internal */
  register(session: ControlSession): void {
    this.sessions.set(session.id, session);
    this.cluster?.setLocalPeers(this.sessions.size);
  }

  /** @internal */
  unregister(session: ControlSession): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    this.cluster?.setLocalPeers(this.sessions.size);
  }

  /** @internal */
  handshakeDone(framed: FramedSocket): void {
    const conn = this.conns.get(framed);
    if (conn) clearTimeout(conn.handshakeTimer);
  }

  private async shutdown(): Promise<void> {
    // Keep listening while dials drain: their observe connections are still to come. New control connections
    // are refused (ERR_SERVER_CLOSING) by the session.
    for (const s of this.sessions.values()) s.goaway();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.coordinator.drain(),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.closeTimeoutMs))),
    ]);
    clearTimeout(timer);
    this.listening = false;
    this.server.close();
    await this.probes?.close();
    this.coordinator.endAll('ERR_SERVER_CLOSING', 'The server is shutting down');
    // Relayed sessions end (reason `stopped`) while the control connections are still open, so that both peers of
    // each session learn why their stream was cut (relay-end) before those connections close.
    await this.relay?.close();
    for (const conn of this.conns.values()) conn.framed.end();
    if (this.sockets.size > 0) await new Promise<void>((resolve) => (this.socketsGone = resolve));
    this.ips.close();
    await this.cluster?.close(); // after the sessions' releases
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    if (!this.listening || this.joining) return void socket.destroy();
    const ip = unmapAddress(socket.remoteAddress);
    const refusal = this.sockets.size >= this.options.maxConnections ? 'ERR_TOO_MANY_CONNECTIONS' : this.ips.admit(ip);
    this.totals.connections++;
    if (refusal) {
      this.totals.refused++;
      this.count(refusal);
      new FramedSocket(socket, { lingerMs: 200 }).fail(refusal, refusalText(refusal));
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => {
      this.ips.release(ip);
      this.sockets.delete(socket);
      if (this.sockets.size === 0) this.socketsGone?.();
    });
    const framed = new FramedSocket(socket, { maxFrameSize: this.options.maxFrameSize });
    const conn: Conn = {
      framed,
      remote: { host: ip, port: socket.remotePort ?? 0 },
      bucket: new TokenBucket(this.options.frameRate, this.options.frameBurst),
      kind: 'new',
      session: undefined,
      handshakeTimer: setTimeout(
        () => framed.fail('ERR_HANDSHAKE_TIMEOUT', `Handshake not completed within ${this.options.handshakeTimeoutMs} ms`),
        this.options.handshakeTimeoutMs,
      ),
    };
    this.conns.set(framed, conn);
    framed.on('message', (msg) => this.onMessage(conn, msg));
    framed.on('close', (err) => {
      clearTimeout(conn.handshakeTimer);
      this.conns.delete(framed);
      if (err) this.count((err as { code?: unknown }).code);
    });
  }

  private onMessage(conn: Conn, msg: Message): void {
    if (!conn.bucket.take()) return conn.framed.fail('ERR_RATE_LIMITED', 'Too many frames on this connection');
    switch (conn.kind) {
      case 'control':
        return conn.session!.handle(msg);
      case 'observe':
        return conn.framed.fail('ERR_UNEXPECTED_MESSAGE', `Unexpected ${msg.type} on an observe connection`);
      case 'new':
        return this.route(conn, msg);
      case 'relay':
        return;
    }
  }

  /** Routes a connection by its first message. */
  private route(conn: Conn, msg: Message): void {
    const { framed } = conn;
    if (msg.type === 'hello') {
      conn.kind = 'control';
      framed.flow(); // a control connection stays framed: the cheaper way of reading
      conn.session = new ControlSession(framed, msg, conn.remote, this);
    } else if (msg.type === 'observe') {
      if (!this.coordinator.observe(framed, msg, conn.remote) && !this.cluster?.observe(framed, msg, conn.remote))
        return framed.fail('ERR_INVALID_TOKEN', 'Unknown coordination, attempt or observe token');
      conn.kind = 'observe';
      clearTimeout(conn.handshakeTimer);
    } else if (msg.type === 'register-family') {
      clearTimeout(conn.handshakeTimer);
      conn.kind = 'observe';
      registerFamily(framed, msg, conn.remote, this.current(msg.id));
    } else if (msg.type === 'relay-join' && this.options.relay.onRelayJoin) {
      conn.kind = 'relay';
      clearTimeout(conn.handshakeTimer);
      this.conns.delete(framed);
      this.sockets.delete(framed.socket); // the relay owns it now; it still counts for its IP until it closes
      const rest = framed.detach();
      this.options.relay.onRelayJoin(framed.socket, msg as RelayMsg, rest, { remote: conn.remote });
    } else if (msg.type === 'relay-join') {
      framed.fail('ERR_RELAY_UNAVAILABLE', 'This server does not relay');
    } else {
      framed.fail('ERR_UNEXPECTED_MESSAGE', `A connection cannot start with ${msg.type}`);
    }
  }

  private count(code: unknown): void {
    const key = typeof code === 'string' ? code : 'ERR_UNKNOWN';
    this.errors[key] = (this.errors[key] ?? 0) + 1;
  }
}

function refusalText(code: string): string {
  return code === 'ERR_RATE_LIMITED' ? 'Too many new connections from this address' : 'Too many connections';
}

/**
 * Starts a rendezvous server and resolves once it listens.
 * @throws TypeError/RangeError (ERR_INVALID_ARG_*, ERR_OUT_OF_RANGE) for bad options; TcpPunchError with the
 * errno name (EADDRINUSE...) when it cannot listen.
 */
export async function startServer(options: ServerOptions = {}): Promise<RendezvousServer> {
  const server = new RendezvousServer(options);
  await server.listen();
  return server;
}
