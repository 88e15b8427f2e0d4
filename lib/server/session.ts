/**
 * A control session: the challenge-response registration of one peer id, then its requests.
 *
 * hello → challenge (server nonce, auth kind) → auth (proof) → welcome (server proof, issued token) → requests.
 * Any message out of order, a wrong proof, or an id held by someone else ends the connection with an `error`
 * frame (`ERR_UNEXPECTED_MESSAGE`, `ERR_AUTH_FAILED`, `ERR_ID_TAKEN`).
 */
import { clientProof, deriveIdKey, familyProof, random, safeEqual, serverProof, sessionKey, wrapPairKey } from '../protocol/crypto.js';
import { familyOf } from '../endpoint.js';
import { kernelRttMs } from '../native.js';
import type { PeerCard } from '../cluster/index.js';
import type { Endpoint, Family } from '../endpoint.js';
import type { Message, Msg, RelayMsg } from '../protocol/messages.js';
import type { FramedSocket } from '../protocol/stream.js';
import type { CoordDraft, CoordPeer, Coordinator } from './coordinator.js';
import type { ResolvedOptions } from './options.js';
import type { FamilySession } from './families.js';
import type { Observation } from './plan.js';
import type { IdRecord, Registry } from '../registry.js';

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly options: ResolvedOptions;
  readonly registry: Registry;
  readonly coordinator: Coordinator;
  /** True once close() has begun: registrations are refused. */
  readonly closing: boolean;
  /** The registered session of an id, if any. */
  current(id: string): ControlSession | undefined;
  /** Makes `session` the registered one for its id (the previous one, if any, has been replaced). */
  register(session: ControlSession): void;
  /** Forgets `session` if it is the registered one for its id. */
  unregister(session: ControlSession): void;
  /** The handshake is over: the server stops the handshake deadline. */
  handshakeDone(conn: FramedSocket): void;
  /** The NAT probe ports announced in `welcome`, if the server runs the probe. */
  readonly probePorts: readonly [number, number] | undefined;
  /** Cluster mode: leases and routing to other nodes (undefined on a single server). */
  readonly cluster: SessionCluster | undefined;
}

/** What a session asks of the cluster (lib/server/cluster-link.ts). */
export interface SessionCluster {
  /** Claims the id's lease before `welcome`; throws ERR_CLUSTER_UNAVAILABLE (or ERR_ID_TAKEN). */
  claim(id: string): Promise<void>;
  /** The registered session ended: give the id back. */
  release(id: string): void;
  /** What other nodes need to punch from the peer's warm port (its mapping, its RTT): on welcome and each report. */
  describe(id: string, card: PeerCard): void;
  /** A message of a coordination running on another node: true when it was sent there. */
  fromLocalPeer(peerId: string, msg: Message): boolean;
}

/** Round-trip samples kept per session: the smallest recent one is the estimate (a loss-inflated one passes). */
const RTT_SAMPLES = 4;

type AuthKind = Msg<'challenge'>['auth'];

/**
 * Most bytes the server lets wait, unsent, in its own memory for one control connection. Beyond the kernel's socket
 * buffers this is only reached by a peer that stops reading while it keeps sending requests (every request has an
 * answer): such a peer is cut with `ERR_RATE_LIMITED` instead of growing the server's memory without bound.
 */
export const MAX_UNSENT_BYTES = 256 * 1024;

/** One peer's control connection. */
export class ControlSession implements CoordPeer, FamilySession {
  readonly id: string;
  private state: 'hello' | 'challenged' | 'verifying' | 'ready' | 'closed' = 'hello';
  private kind: AuthKind = 'none';
  private token: Uint8Array | null = null;
  private key: Uint8Array = new Uint8Array(32);
  private readonly serverNonce = random(32);
  private readonly clientNonce: Uint8Array;
  private idleTimer: NodeJS.Timeout | undefined;
  private challengedAt = 0;
  private readonly rtts: number[] = [];
  private readonly warmObservation: Observation | undefined;
  /** Dual-stack (lib/server/families.ts): the observation in the other family, and the nonces its proofs used. */
  private second: Observation | undefined;
  private readonly familyNonces = new Set<string>();

  constructor(
    private readonly conn: FramedSocket,
    hello: Msg<'hello'>,
    private readonly remote: Endpoint,
    private readonly host: SessionHost,
  ) {
    this.id = hello.id;
    this.clientNonce = hello.nonce;
    // The live control connection is this mapping: a NAT that rebinds it breaks the connection, and the peer's
    // next registration brings the new one, so the server never holds a mapping older than its connection.
    this.warmObservation = hello.warm ? { public: remote, private: hello.private, mapping: 'unknown', filtering: 'unknown' } : undefined;
    conn.on('close', () => this.closed());
    void this.challenge();
  }

  /** CoordPeer: sends `coord` with the pair key wrapped by this session's key (only this node knows it). */
  sendCoord(msg: CoordDraft, pairKey: Uint8Array): boolean {
    return this.send({ ...msg, pairKey: wrapPairKey(this.key, msg.coordId, pairKey) });
  }

  /** CoordPeer: the control connection's mapping, when its port is reusable. */
  get warm(): Observation | undefined {
    return this.warmObservation;
  }

  /** FamilyPeer: the control connection's IP version. */
  get controlFamily(): Family {
    return familyOf(this.remote.host) === 6 ? 6 : 4;
  }

  /** FamilySession: a `register-family` proof made with this session's key over a nonce not used before. */
  familyProofOk(nonce: Uint8Array, mac: Uint8Array): boolean {
    const key = Buffer.from(nonce).toString('hex');
    if (this.state !== 'ready' || this.familyNonces.has(key) || this.familyNonces.size >= 64) return false;
    if (!safeEqual(mac, familyProof(this.key, nonce, this.id))) return false;
    this.familyNonces.add(key);
    return true;
  }

  /** FamilyPeer: the observation in the other family, once registered. */
  get secondFamily(): Observation | undefined {
    return this.second;
  }

  /** FamilySession: records (or replaces) the observation in the other family. */
  setSecondFamily(o: Observation): void {
    this.second = o;
  }

  /**
   * CoordPeer: the round-trip estimate to this peer in ms (0 until measured). The kernel's figure comes first: the
   * peer's own samples include both ends' processing (the first one a whole handshake step), and an inflated
   * estimate on one side delays the other side's SYN by half the difference.
   */
  get rttMs(): number {
    const kernel = kernelRttMs(this.conn.socket);
    if (kernel !== undefined) return kernel;
    return this.rtts.length === 0 ? 0 : Math.min(...this.rtts);
  }

  /** The session key pair keys are wrapped with for this peer (valid once registered). */
  get sessionKey(): Uint8Array {
    return this.key;
  }

  /** True while registered. */
  get ready(): boolean {
    return this.state === 'ready';
  }

  /**
   * Sends a message; false once the connection is closing. A peer that has left {@link MAX_UNSENT_BYTES} unread is
   * cut instead (`ERR_RATE_LIMITED`).
   */
  send(msg: Message): boolean {
    const socket = this.conn.socket;
    if (socket.writableLength > MAX_UNSENT_BYTES) {
      this.fail('ERR_RATE_LIMITED', `Replies are not being read (${socket.writableLength} bytes unsent)`);
      return false;
    }
    // The frames sent to one peer in one tick (coord + prepare, coord + relay-token, end + the next coord...) leave
    // in one write and one TCP segment: corked until the tick's end (end() and fail() flush at once).
    if (!this.corked && this.conn.open) {
      this.corked = true;
      socket.cork();
      process.nextTick(this.uncork);
    }
    return this.conn.send(msg);
  }

  /** True while this tick's frames are held for one write (see send). */
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.conn.socket.uncork();
  };

  /** Sends an `error` frame and closes. */
  fail(code: string, message: string): void {
    this.conn.fail(code, message);
  }

  /** Tells the peer the server is going away (it should reconnect later); coordinations in flight continue. */
  goaway(): void {
    this.conn.send({ type: 'goaway', code: 'ERR_SERVER_CLOSING', message: 'The server is shutting down' });
  }

  /** Handles one message after `hello`. */
  handle(msg: Message): void {
    if (this.state === 'challenged' && msg.type === 'auth') {
      void this.verify(msg).catch((err: unknown) => this.fail('ERR_INTERNAL', `Registry failure: ${String(err)}`));
      return;
    }
    if (this.state !== 'ready') return this.fail('ERR_UNEXPECTED_MESSAGE', `Unexpected ${msg.type} during the handshake`);
    this.idleTimer?.refresh();
    const coord = this.host.coordinator;
    switch (msg.type) {
      case 'ping':
        if (msg.rttUs > 0) this.sample(msg.rttUs / 1000);
        this.send({ type: 'pong', seq: msg.seq });
        return;
      case 'pong':
        return;
      case 'report':
        if (this.warmObservation) {
          this.warmObservation.mapping = msg.mapping;
          this.warmObservation.filtering = msg.filtering;
          this.describe();
        }
        return;
      case 'cancel':
      case 'result':
      case 'release':
        if (this.host.cluster?.fromLocalPeer(this.id, msg)) return;
        return coord.handle(this, msg);
      case 'connect':
        return coord.handle(this, msg);
      default:
        if (msg.type.startsWith('relay-') && this.host.options.relay.onControlMessage) {
          return this.host.options.relay.onControlMessage(
            { peerId: this.id, send: (m) => this.send(m), fail: (c, m) => this.fail(c, m) },
            msg as RelayMsg,
          );
        }
        return this.fail('ERR_UNEXPECTED_MESSAGE', `Unexpected ${msg.type} on a control connection`);
    }
  }

  private async challenge(): Promise<void> {
    const { secret } = this.host.options;
    if (this.host.closing) return this.fail('ERR_SERVER_CLOSING', 'The server is shutting down');
    let record: IdRecord | undefined;
    if (!secret) {
      try {
        record = await this.host.registry.get(this.id);
      } catch (err) {
        return this.fail('ERR_INTERNAL', `Registry failure: ${String(err)}`);
      }
    }
    this.kind = secret ? 'secret' : record?.token ? 'token' : 'none';
    this.token = record?.token ?? null;
    if (this.state !== 'hello') return; // failed or closed meanwhile
    this.state = 'challenged';
    this.challengedAt = performance.now();
    this.send({ type: 'challenge', nonce: this.serverNonce, auth: this.kind });
  }

  private async verify(msg: Msg<'auth'>): Promise<void> {
    this.state = 'verifying';
    this.sample(performance.now() - this.challengedAt); // challenge → auth: the first round trip
    const { secret, idReservationMs } = this.host.options;
    const { registry } = this.host;
    let issued: Uint8Array = new Uint8Array(0);
    if (this.kind === 'secret') {
      this.key = deriveIdKey(secret!, this.id);
      if (!this.proofOk(msg.proof)) return this.fail('ERR_AUTH_FAILED', 'Authentication failed');
    } else if (this.kind === 'token') {
      if (msg.proof.length === 0) return this.fail('ERR_ID_TAKEN', `Id ${this.id} is held by another peer`);
      this.key = this.token!;
      if (!this.proofOk(msg.proof)) return this.fail('ERR_AUTH_FAILED', 'Authentication failed');
      await registry.update(this.id, { token: this.token, expiresAt: null });
    } else {
      issued = random(32);
      this.key = issued;
      if (!(await registry.create(this.id, { token: issued, expiresAt: null })))
        return this.fail('ERR_ID_TAKEN', `Id ${this.id} is held by another peer`);
      this.token = issued;
    }
    if (!this.conn.open) {
      // Closed while the registry answered: keep the reservation for the holder of the token.
      if (this.token) await registry.update(this.id, { token: this.token, expiresAt: Date.now() + idReservationMs });
      return;
    }
    if (this.host.closing) return this.fail('ERR_SERVER_CLOSING', 'The server is shutting down');
    const { cluster } = this.host;
    if (cluster) {
      try {
        await cluster.claim(this.id);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        return this.fail(typeof code === 'string' ? code : 'ERR_CLUSTER_UNAVAILABLE', `Cannot register in the cluster: ${(err as Error).message}`);
      }
      if (!this.conn.open || this.host.closing) {
        if (!this.host.current(this.id)) cluster.release(this.id);
        return this.host.closing ? this.fail('ERR_SERVER_CLOSING', 'The server is shutting down') : undefined;
      }
    }
    const previous = this.host.current(this.id);
    if (previous) previous.fail('ERR_REPLACED', 'Another connection registered this id with its credential');
    this.host.register(this);
    this.state = 'ready';
    const { keepaliveMs, idleTimeoutMs, maxPendingPerPeer } = this.host.options;
    this.send({
      type: 'welcome',
      proof: serverProof(this.key, this.serverNonce, this.clientNonce, this.id),
      token: issued,
      observed: this.remote,
      keepaliveMs,
      maxPending: Math.min(maxPendingPerPeer, 0xffff),
      probePort1: this.host.probePorts?.[0] ?? 0,
      probePort2: this.host.probePorts?.[1] ?? 0,
    });
    this.key = sessionKey(this.key, this.serverNonce, this.clientNonce);
    this.host.handshakeDone(this.conn);
    this.idleTimer = setTimeout(() => this.fail('ERR_IDLE_TIMEOUT', `Nothing received for ${idleTimeoutMs} ms`), idleTimeoutMs);
    this.describe();
  }

  /** Cluster mode: tells other nodes this peer's warm mapping and RTT, so that dials from there start warm too. */
  private describe(): void {
    this.host.cluster?.describe(this.id, { ...(this.warmObservation ? { warm: this.warmObservation } : {}), rttMs: this.rttMs });
  }

  private sample(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.rtts.push(ms);
    if (this.rtts.length > RTT_SAMPLES) this.rtts.shift();
  }

  private proofOk(proof: Uint8Array): boolean {
    return proof.length === 32 && safeEqual(proof, clientProof(this.key, this.serverNonce, this.clientNonce, this.id));
  }

  /** Set when the cluster took the id away (its lease was lost): the lease is not ours to release. */
  private leaseLost = false;

  /** Ends the session because the cluster no longer grants this node the id. */
  loseLease(code: string, message: string): void {
    this.leaseLost = true;
    this.fail(code, message);
  }

  private closed(): void {
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    clearTimeout(this.idleTimer);
    if (!wasReady) return;
    this.host.coordinator.peerGone(this);
    if (this.host.current(this.id) !== this) return; // replaced: the new session holds the id
    this.host.unregister(this);
    if (!this.leaseLost) this.host.cluster?.release(this.id);
    if (this.token) {
      const until = Date.now() + this.host.options.idReservationMs;
      this.host.registry.update(this.id, { token: this.token, expiresAt: until }).catch(() => undefined);
    }
  }
}
