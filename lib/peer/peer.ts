/**
 * The Peer: keeps a registered control connection to the rendezvous server (reconnecting with backoff), dials
 * other peers through a pluggable strategy, and emits `connection` for dials that reach it.
 *
 * Errors of `dial()` (TcpPunchError, with `peerId` and `attempts`: the AttemptEvents of this side):
 * `ERR_PEER_OFFLINE`, `ERR_PEER_REFUSED`, `ERR_PEER_BUSY`, `ERR_TOO_MANY_PENDING`, `ERR_SERVER_BUSY`,
 * `ERR_SERVER_CLOSING`, `ERR_INVALID_TARGET`, `ERR_PUNCH_FAILED` (every attempt failed), `ERR_HANDSHAKE_FAILED`,
 * `ETIMEDOUT`, `ABORT_ERR`, `ERR_SERVER_DISCONNECTED`, `ERR_PEER_CLOSED`.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

import { AbortError, TcpPunchError, invalidArgType, throwIfAborted } from '../errors.js';
import { requireNative } from '../native.js';
import { wrapPairKey } from '../protocol/crypto.js';
import type { Endpoint } from '../endpoint.js';
import type { Message, Msg, RelayMsg } from '../protocol/messages.js';
import { WarmSlot } from './attempt.js';
import { registerSecondFamily } from './families.js';
import type { AttemptEnv } from './attempt.js';
import { ControlConnection, FATAL_CODES } from './control.js';
import { PeerCoordination } from './coordination.js';
import { checkPeerId, resolveDialOptions, resolvePeerOptions } from './options.js';
import type { ResolvedPeerOptions } from './options.js';
import { backoffDelay } from '../backoff.js';
import { ServerList, parseServerList } from './server-list.js';
import type { AttemptEvent, ConnectionInfo, DialOptions, DialResult, NatFiltering, NatMapping, PeerOptions, RelayEndInfo, Role } from './types.js';
import type { NatCheckResult } from '../nat-check/check.js';
import type { UpgradableStream } from '../upgrade.js';
import { decodeRelay } from '../relay/frames.js';
import { Incoming } from './incoming.js';
import { NatReport } from './nat-report.js';
import { RelayEnds } from './relay-ends.js';
import { ConnectRequests } from './requests.js';

/** Events of a {@link Peer}. */
export interface PeerEvents {
  /**
   * Another peer dialled this one and the stream is up: an authenticated direct socket, a relayed socket, or (for a
   * dialer's `relay-first`) an {@link UpgradableStream} that moves to a direct socket later.
   */
  connection: [socket: Socket | UpgradableStream, info: ConnectionInfo];
  /** A relay-first stream (either side) moved to its direct connection. */
  upgrade: [info: { peerId: string; coordId: string; role: Role }];
  /** The relay ended a relayed session of this peer (limits included); also on the dial result's `relayEnd`. */
  'relay-end': [info: RelayEndInfo];
  /** One attempt of a dial (either side) ended, successfully or with a reason. */
  attempt: [event: AttemptEvent];
  /** (Re-)registered with the server. */
  online: [];
  /** Lost the control connection; reconnecting unless the error is fatal. */
  offline: [err: Error | undefined];
  /** The peer stopped for good: `close()` (no error) or a fatal registration error (ERR_ID_TAKEN, ERR_REPLACED...). */
  close: [err: Error | undefined];
  /** The NAT probe (`options.natProbe`) finished after a (re)connect: its result, or why it failed. */
  nat: [result: NatCheckResult | undefined, err: Error | undefined];
  /** A relay-range message (0x40..0x4f) from the server: the relay's integration point. */
  'relay-message': [msg: RelayMsg];
  /** Dual-stack (`options.dualStackServer`): the second family registered (its family and address), or why not. */
  family: [registered: { family: 4 | 6; address: string } | undefined, err: Error | undefined];
}

/** A peer registered with a rendezvous server. Create it with {@link Peer.connect}. */
export class Peer<S extends string = never> extends EventEmitter<PeerEvents> {
  /** This peer's id. */
  readonly id: string;
  private readonly opts: ResolvedPeerOptions;
  private conn: ControlConnection | undefined;
  private env: AttemptEnv | undefined;
  private draining = false;
  private closed = false;
  private lastToken: Uint8Array | undefined;
  private lastAuth: 'none' | 'secret' | 'token' | undefined;
  private readonly requests: ConnectRequests;
  private readonly coords = new Map<string, PeerCoordination>();
  private readonly relayEnds = new RelayEnds();
  private readonly incoming: Incoming;
  private readonly natReport: NatReport;
  private onlineWaiters = new Set<() => void>();
  private reconnectTimer: NodeJS.Timeout | undefined;

  /** Where to register (one server, or the nodes of a cluster in turn). */
  private readonly list: ServerList;

  private constructor(opts: ResolvedPeerOptions, list: ServerList) {
    super();
    this.opts = opts;
    this.list = list;
    this.id = opts.id;
    this.lastToken = opts.token;
    this.natReport = new NatReport(opts.natProbe, opts.localAddress, (result, err) => this.emit('nat', result, err));
    this.requests = new ConnectRequests({
      closed: () => this.closed,
      usable: () => (this.draining ? undefined : this.conn),
      waitOnline: (fn) => this.onlineWaiters.add(fn),
      unwait: (fn) => this.onlineWaiters.delete(fn),
      attempt: (ev) => this.emit('attempt', ev),
    });
    this.incoming = new Incoming({
      id: opts.id,
      accept: opts.accept,
      listening: () => this.listenerCount('connection') > 0,
      connection: (socket, info) => this.emit('connection', socket, info),
      upgraded: (info) => this.emit('upgrade', info),
    });
  }

  /**
   * Connects to the server and registers `options.id`; resolves once registered.
   * @throws ERR_INVALID_ARG_* for bad options; TcpPunchError `ERR_SERVER_UNREACHABLE`, `ETIMEDOUT`,
   * `ERR_AUTH_FAILED`, `ERR_AUTH_REQUIRED`, `ERR_ID_TAKEN`, `ERR_SERVER_AUTH_FAILED`, `ERR_SERVER_CLOSING`.
   */
  static async connect<S extends string = never>(options: PeerOptions<S>): Promise<Peer<S>> {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
    const servers = parseServerList(options.server);
    const peer = new Peer<S>(resolvePeerOptions({ ...options, server: servers[0]! }), new ServerList(servers));
    // Registers with the first server of the list that answers; a refusal of the id itself (FATAL_CODES) stops.
    for (;;) {
      try {
        await peer.open();
        return peer;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && FATAL_CODES.has(code)) throw err;
        if (peer.list.failed().roundFailed) throw err;
      }
    }
  }

  /** True while registered with the server. */
  get online(): boolean {
    return this.conn !== undefined && !this.draining;
  }

  /** Open servers: the token proving this peer holds its id; pass it as `options.token` to reclaim the id later. */
  get token(): Uint8Array | undefined {
    return this.lastToken && Uint8Array.from(this.lastToken);
  }

  /**
   * How the server authenticated this peer at its last registration: `secret` (a server with a secret: only its
   * holders are peers), `none` or `token` (an open server: anyone may register).
   */
  get serverAuth(): 'none' | 'secret' | 'token' | undefined {
    return this.lastAuth;
  }

  /** This peer's control connection address as the server sees it. */
  get observed(): Endpoint | undefined {
    return this.conn && { ...this.conn.observed };
  }

  /**
   * Dual-stack (`options.dualStackServer`): the second IP family this connection registered and the exact address
   * its punches bind to; undefined until registered (or when it failed: see the `family` event).
   */
  get secondFamily(): { family: 4 | 6; address: string } | undefined {
    const other = this.env?.other;
    return other && { family: other.family, address: other.localAddress ?? '' };
  }

  /** What the last NAT probe measured (`options.natProbe`); undefined until one has finished. */
  get nat(): NatCheckResult | undefined {
    return this.natReport.last;
  }

  /** This network's NAT mapping as reported to the server with each attempt. */
  get natMapping(): NatMapping {
    return this.natReport.mapping;
  }

  /** This network's inbound filtering as reported to the server with the mapping. */
  get natFiltering(): NatFiltering {
    return this.natReport.filtering;
  }

  /** The server's numeric endpoint while connected (relay connections may go to the same port). */
  get server(): Endpoint | undefined {
    return this.conn && { ...this.conn.server };
  }

  /**
   * Sends a relay-range message (type 0x40..0x4f, e.g. `relay-token-request`) on the control connection; false
   * while offline. Replies arrive as `relay-message` events.
   */
  sendRelayMessage(msg: RelayMsg): boolean {
    if (typeof msg !== 'object' || msg === null || !msg.type?.startsWith?.('relay-'))
      throw invalidArgType('msg', 'a relay message', msg);
    return this.conn?.send(msg) ?? false;
  }

  /**
   * Dials `peerId` and resolves with an authenticated socket.
   * @throws ERR_INVALID_ARG_* synchronously-rejected for bad arguments; see the module doc for the codes.
   */
  async dial(peerId: string, options: DialOptions<S> = {}): Promise<DialResult> {
    checkPeerId(peerId, 'peerId');
    const { timeoutMs, signal, strategy } = resolveDialOptions(options, this.opts.strategies);
    if (this.closed) throw new TcpPunchError('ERR_PEER_CLOSED', 'The peer is closed');
    throwIfAborted(signal);
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const deadline = performance.now() + timeoutMs;
    const left = (ms: number | undefined): number => Math.max(1, Math.floor(Math.min(ms ?? Infinity, deadline - performance.now())));
    try {
      return await strategy.dial({
        peer: this,
        peerId,
        timeoutMs,
        signal: ac.signal,
        // An upgrade runs after the dial has resolved: its own timeout, not the dial's deadline.
        // Without the addon a punch cannot start: fail here (ERR_NATIVE_UNAVAILABLE) before asking the server.
        direct: async (o = {}) => {
          requireNative('a direct dial (hole punching)');
          return this.requests.dial(peerId, 'direct', o.link ? (o.timeoutMs ?? timeoutMs) : left(o.timeoutMs), o.signal ?? ac.signal, o.link);
        },
        relay: async (o = {}) => {
          const path = o.upgradable ? 'relay-upgradable' : 'relay';
          const coordId = { value: '' };
          const result = await this.requests.dial(peerId, path, left(o.timeoutMs), ac.signal, undefined, coordId);
          return { ...result, coordId: coordId.value };
        },
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Closes the control connection and cancels dials in flight. Sockets already handed out stay open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.natReport.stop();
    // The server tells the other sides (ERR_PEER_OFFLINE) when the control connection closes.
    this.failAll(new TcpPunchError('ERR_PEER_CLOSED', 'The peer was closed'), false);
    for (const w of this.onlineWaiters) w();
    this.relayEnds.settle();
    const conn = this.conn;
    this.conn = undefined;
    await conn?.close();
    this.emit('close', undefined);
  }

  private async open(): Promise<void> {
    const o = this.opts;
    const conn = await ControlConnection.open({
      server: this.list.current(),
      id: o.id,
      idKey: o.idKey,
      token: this.lastToken,
      localAddress: o.localAddress,
      timeoutMs: o.connectTimeoutMs,
    });
    if (this.closed) return void conn.close();
    this.conn = conn;
    this.list.succeeded();
    this.draining = false;
    this.lastToken = conn.token ?? this.lastToken;
    this.lastAuth = conn.auth;
    this.env = {
      server: conn.server,
      family: conn.family,
      localAddress: o.localAddress,
      punch: o.punch,
      natMapping: () => this.natMapping,
      natFiltering: () => this.natFiltering,
      warm: conn.warm && new WarmSlot(conn.warm.address, conn.warm.port),
    };
    conn.on('message', (msg) => this.onMessage(msg));
    conn.on('close', (err) => this.onClose(conn, err));
    conn.start();
    for (const w of this.onlineWaiters) w();
    this.emit('online');
    if (conn.closed) return this.onClose(conn, undefined);
    this.natReport.start(conn);
    if (o.dualStackServer) this.registerFamily(conn, o.dualStackServer);
  }

  /** Registers the second IP family for this control connection (lib/peer/families.ts). */
  private registerFamily(conn: ControlConnection, server: Endpoint): void {
    const env = this.env!;
    registerSecondFamily({ server, id: this.opts.id, sessionKey: conn.sessionKey, base: env, timeoutMs: this.opts.connectTimeoutMs }).then(
      (other) => {
        if (this.conn !== conn) return;
        env.other = other;
        this.emit('family', { family: other.family, address: other.localAddress! }, undefined);
      },
      (err: Error) => {
        if (this.conn === conn) this.emit('family', undefined, err);
      },
    );
  }

  private onClose(conn: ControlConnection, err: Error | undefined): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    // Relay notices travel on this connection: with it gone, none will come for the sessions we know of.
    this.relayEnds.settle();
    this.failAll(new TcpPunchError('ERR_SERVER_DISCONNECTED', 'Lost the connection to the server', { cause: err }), false);
    if (this.closed) return;
    this.emit('offline', err);
    const code = (err as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string' && FATAL_CODES.has(code)) return this.terminate(err!);
    if (!this.opts.reconnect) return this.terminate(err ?? new TcpPunchError('ERR_SERVER_DISCONNECTED', 'Lost the server'));
    // Lost this server: the next of the list is tried at once (with one server, after the first backoff step).
    const { roundFailed } = this.list.failed();
    this.scheduleReconnect(0, !roundFailed);
  }

  /**
   * Reconnects after the backoff of round `n`, or at once (`now`: another server of the list is still untried
   * this round). Each failed attempt moves to the next server; a whole round without success backs off further.
   */
  private scheduleReconnect(n: number, now = false): void {
    const delay = now ? 0 : backoffDelay(n, this.opts.reconnect!);
    this.reconnectTimer = setTimeout(() => {
      this.open().catch((err: unknown) => {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && FATAL_CODES.has(code)) return this.terminate(err as Error);
        if (this.closed) return;
        const { roundFailed } = this.list.failed();
        if (roundFailed) this.scheduleReconnect(n + 1);
        else this.scheduleReconnect(n, true);
      });
    }, delay);
  }

  private terminate(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.onlineWaiters) w();
    this.emit('close', err);
  }

  private failAll(err: TcpPunchError, notify: boolean): void {
    this.requests.failAll(err);
    for (const pc of [...this.coords.values()]) pc.cancel(new TcpPunchError(err.code, err.message), notify);
  }

  private onMessage(msg: Message): void {
    switch (msg.type) {
      case 'coord':
        return this.onCoord(msg);
      case 'reject': {
        const r = this.requests.get(msg.reqId);
        return r?.onReject(new TcpPunchError(msg.code, msg.message));
      }
      case 'prepare':
      case 'prepare-family':
      case 'punch':
      case 'end':
        return this.coords.get(Buffer.from(msg.coordId).toString('hex'))?.handle(msg);
      case 'goaway':
        this.draining = true;
        return;
      default:
        if (msg.type.startsWith('relay-')) this.onRelayMessage(msg as RelayMsg);
        return;
    }
  }

  private onRelayMessage(msg: RelayMsg): void {
    this.emit('relay-message', msg);
    let body;
    try {
      body = decodeRelay(msg);
    } catch {
      return; // a relay message of a newer server: nothing of ours waits for it
    }
    if (body.name === 'relay-token') {
      this.coords.get(body.sessionId)?.relayGrant(body);
    } else if (body.name === 'relay-end') {
      const { name: _name, ...info } = body;
      this.relayEnds.deliver(info);
      this.emit('relay-end', info);
    }
  }

  private onCoord(msg: Msg<'coord'>): void {
    const conn = this.conn!;
    const request = msg.role === 'initiator' ? this.requests.get(msg.reqId) : undefined;
    const pc = new PeerCoordination(
      msg,
      wrapPairKey(conn.sessionKey, msg.coordId, msg.pairKey),
      this.env!,
      { send: (m) => conn.send(m), report: (m) => conn.report(m), attempt: (ev) => this.emit('attempt', ev), relayEnd: (sid) => this.relayEnds.of(sid) },
      request?.startedAt ?? performance.now(),
    );
    this.coords.set(pc.key, pc);
    const forget = (): void => void this.coords.delete(pc.key);
    pc.result.then(forget, forget);
    if (msg.role === 'initiator') {
      if (!request) return pc.cancel(new AbortError('The dial was abandoned before the server answered'), true);
      request.onCoord(pc);
      return pc.begin();
    }
    this.incoming.answer(pc);
  }
}
