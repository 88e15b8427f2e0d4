/**
 * startTunnelClient(): listens on a local address and carries each local connection to a peer's exposed service
 * over a punched (or relayed) connection taken from a pool of spares.
 *
 * A local client that arrives while the server or the peer is away waits for it (at most `waitPeerMs`, reported
 * as a `wait` event); nothing of the client is read before a tunnel has been accepted, so a dead spare or a
 * failed dial costs it only time.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Backoff } from '../backoff.js';
import type { Endpoint } from '../endpoint.js';
import { TcpPunchError } from '../errors.js';
import type { Peer } from '../peer/index.js';
import type { DialOptions } from '../peer/types.js';
import { defaultPump, type Pump, type PumpResult } from '../relay/pump.js';
import { drainThenBridge, failedResult } from './bridge.js';
import type { TunnelEvent } from './events.js';
import { connectorHandshake, serviceKey } from './handshake.js';
import { ConnectionPool, type TunnelConnection } from './pool.js';
import { endReport } from './report.js';
import { ACK, OPEN, readFirstByte } from './wire.js';

/** Spare connections a tunnel client keeps ready unless told otherwise. */
export const DEFAULT_POOL_SIZE = 2;

export interface TunnelClientOptions {
  /** The peer whose service to reach. */
  peerId: string;
  /** Local address to listen on (port 0 picks one). */
  listen: Endpoint;
  /** Dial strategy (default: the peer's default). */
  strategy?: string;
  /** Dial deadline; default 15000 ms. */
  dialTimeoutMs?: number;
  /** Spare connections kept ready; default 2. */
  poolSize?: number;
  /** Deadline for the exposing side's answer (and of the tunnel handshake); default 10000 ms. */
  answerTimeoutMs?: number;
  /** How long a local client waits for the server or the peer to come back; default 5000 ms, 0: not at all. */
  waitPeerMs?: number;
  /** The service's key (see exposeService); without it only a service without a key can be reached. */
  key?: string | Uint8Array;
  /** With a key: encrypt the tunnel end to end (TLS 1.3, PSK from the key); default true. */
  encrypt?: boolean;
  /** Ping interval of idle spares (keeps relayed spares from the relay's idle limit); default 20000 ms. */
  keepaliveMs?: number;
  pump?: Pump;
  onEvent?: (event: TunnelEvent) => void;
}

export interface TunnelClient {
  address(): AddressInfo;
  stats(): { active: number; total: number; spares: number };
  /** Stops listening, drops the spares and clients still waiting; tunnels already relaying finish on their own. */
  close(): Promise<void>;
}

/** Dial failures that mean "the server or the peer is away": worth waiting for, within `waitPeerMs`. */
const AWAY_CODES = new Set(['ERR_PEER_OFFLINE', 'ERR_SERVER_DISCONNECTED', 'ERR_SERVER_CLOSING', 'ECONNRESET']);

export async function startTunnelClient(peer: Peer, options: TunnelClientOptions): Promise<TunnelClient> {
  const { peerId, listen, strategy, dialTimeoutMs = 15_000, poolSize = DEFAULT_POOL_SIZE, answerTimeoutMs = 10_000 } = options;
  const { pump = defaultPump, onEvent = () => {}, waitPeerMs = 5000, encrypt = true } = options;
  const key = serviceKey(options.key);
  // A name from the command line: dial() validates it (ERR_INVALID_ARG_VALUE) at run time.
  const dialOptions: DialOptions = { timeoutMs: dialTimeoutMs, ...(strategy ? { strategy: strategy as NonNullable<DialOptions['strategy']> } : {}) };

  const dial = async (): Promise<TunnelConnection> => {
    const result = await peer.dial(peerId, dialOptions);
    result.socket.on('error', () => {});
    try {
      const stream = await connectorHandshake(result.socket, { key, encrypt, selfId: peer.id, peerId, timeoutMs: answerTimeoutMs });
      return { result, stream };
    } catch (err) {
      result.socket.destroy();
      throw err;
    }
  };
  // Spares that keep failing for the same reason (peer offline, say) are reported once, not at every retry.
  let lastRefillCode: string | undefined;
  const pool = new ConnectionPool({
    size: poolSize,
    ...(options.keepaliveMs ? { keepaliveMs: options.keepaliveMs } : {}),
    dial: async () => {
      const conn = await dial();
      lastRefillCode = undefined;
      return conn;
    },
    onDrop: (reason) => onEvent({ type: 'drop', peerId, reason }),
    onRefillError: (err) => {
      const e = err as TcpPunchError & { refused?: boolean };
      const code = e.code ?? 'ERR_DIAL';
      if (code === lastRefillCode) return;
      lastRefillCode = code;
      if (e.refused) onEvent({ type: 'fail', peerId, code, message: e.message, spare: true, refused: true });
      else onEvent({ type: 'fail', peerId, code, message: `cannot open a spare connection: ${err.message}`, spare: true });
    },
  });
  const onOnline = (): void => pool.kick();
  peer.on('online', onOnline);
  const locals = new Set<Socket>();
  let active = 0;
  let total = 0;

  /** A tunnel for one local client: waits (bounded) while the server or the peer is away. */
  const tunnelFor = async (local: Socket): Promise<TunnelConnection> => {
    const started = Date.now();
    const backoff = new Backoff({ minDelayMs: 100, maxDelayMs: 1000 });
    let waited = false;
    const wait = (reason: string): void => {
      if (waited) return;
      waited = true;
      onEvent({ type: 'wait', peerId, reason, maxWaitMs: waitPeerMs });
    };
    for (;;) {
      try {
        // Spares of the direct path outlive the server: try them before waiting for it.
        if (!peer.online && pool.ready === 0) {
          wait('the server is away');
          if (!(await untilOnline(peer, started + waitPeerMs - Date.now()))) {
            throw new TcpPunchError('ERR_SERVER_DISCONNECTED', 'the server is away');
          }
        }
        return (await pool.take()).conn;
      } catch (err) {
        const e = err as TcpPunchError;
        const left = started + waitPeerMs - Date.now();
        if (!AWAY_CODES.has(e.code) || left <= 0 || local.destroyed) {
          if (waited) e.message = `gave up after waiting ${Date.now() - started} ms: ${e.message}`;
          throw e;
        }
        wait(`${e.code}: ${e.message}`);
        await sleep(Math.min(backoff.next(), left));
      }
    }
  };

  const handle = async (local: Socket): Promise<void> => {
    const started = Date.now();
    local.on('error', () => {});
    locals.add(local);
    local.once('close', () => locals.delete(local));
    let conn: TunnelConnection;
    try {
      conn = await tunnelFor(local);
    } catch (err) {
      const e = err as TcpPunchError & { refused?: boolean };
      onEvent({ type: 'fail', peerId, code: e.code ?? 'ERR_DIAL', message: e.message, ...(e.refused ? { refused: true } : {}) });
      local.destroy();
      return;
    }
    const { result, stream: tunnel } = conn;
    if (local.destroyed) {
      tunnel.destroy();
      return;
    }
    let answer;
    try {
      tunnel.write(Buffer.from([OPEN]));
      answer = await readFirstByte(tunnel, answerTimeoutMs);
      if (answer.byte !== ACK) throw new TcpPunchError('ERR_SERVICE_UNAVAILABLE', `${peerId} could not reach its service`);
    } catch (err) {
      const e = err as TcpPunchError;
      onEvent({ type: 'fail', peerId, code: e.code ?? 'ERR_TUNNEL', message: e.message });
      tunnel.destroy();
      local.destroy();
      return;
    }
    active++;
    total++;
    onEvent({ type: 'open', peerId, path: result.path, family: result.family, attempt: result.attempt, connectMs: result.timings.totalMs, waitMs: Date.now() - started });
    let end: PumpResult;
    try {
      end = await drainThenBridge(local, tunnel, pump, answer.rest);
    } catch (err) {
      local.destroy();
      tunnel.destroy();
      end = failedResult(err as Error);
    }
    const report = await endReport(end, result.relayEnd);
    active--;
    onEvent({ type: 'close', peerId, path: result.path, ...report });
  };

  // pauseOnConnect: nothing from the local client is read into JS before the pump takes the socket. allowHalfOpen:
  // a client that has sent everything (FIN) still gets the whole answer when the bytes pass through JS (TLS).
  const server = createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true }, (local) => void handle(local));
  server.listen(listen.port, listen.host);
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  } catch (err) {
    peer.off('online', onOnline);
    throw err;
  }
  pool.start();
  return {
    address: () => server.address() as AddressInfo,
    stats: () => ({ active, total, spares: pool.ready }),
    close: async () => {
      peer.off('online', onOnline);
      pool.close();
      const closed = new Promise((r) => server.close(r));
      for (const s of locals) s.destroy();
      await closed;
    },
  };
}

/** Resolves true once `peer` is online (at once if it is), false after `ms` or if the peer closes. */
async function untilOnline(peer: Peer, ms: number): Promise<boolean> {
  if (peer.online) return true;
  if (ms <= 0) return false;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    await Promise.race([once(peer, 'online', { signal: ac.signal }), once(peer, 'close', { signal: ac.signal })]);
    return peer.online;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}
