/**
 * exposeService(): offers a local TCP service to the peers that dial this one. Every authenticated peer
 * connection runs the tunnel handshake (the key proof, then TLS, when the service has a key), then waits for the
 * tunnel's OPEN byte (it may be a spare kept ready by the other side), answering pings; then it gets its own
 * connection to the service, and the two are bridged by the pump (or piped through TLS when encrypted).
 */
import { Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Endpoint } from '../endpoint.js';
import type { TcpPunchError } from '../errors.js';
import type { Peer } from '../peer/index.js';
import type { ConnectionInfo } from '../peer/types.js';
import { defaultPump, type Pump, type PumpResult } from '../relay/pump.js';
import { bridge, failedResult } from './bridge.js';
import type { TunnelEvent } from './events.js';
import { exposerHandshake, serviceKey } from './handshake.js';
import { endReport } from './report.js';
import { ACK, NAK, awaitOpen } from './wire.js';

export type { TunnelEvent } from './events.js';

export interface ExposeOptions {
  /** The local service. */
  to: Endpoint;
  /** Deadline to connect to the service; default 5000 ms. */
  connectTimeoutMs?: number;
  /** Peer connections kept waiting for OPEN at once (spares); the oldest is closed beyond this. Default 64. */
  maxIdle?: number;
  /**
   * The service key: only peers that prove they hold it reach the service, and the service proves it back
   * (ERR_SERVICE_KEY otherwise). Default: none (any peer the server lets dial this one).
   */
  key?: string | Uint8Array;
  /** With a key: encrypt every tunnel end to end (TLS 1.3, PSK from the key); default true. */
  encrypt?: boolean;
  /** Only these peer ids (as the server authenticated them) may connect (ERR_SERVICE_NOT_ALLOWED otherwise). */
  allow?: readonly string[];
  /** Deadline of the tunnel handshake; default 10000 ms. */
  handshakeTimeoutMs?: number;
  pump?: Pump;
  /** Called as tunnels open, fail and close. */
  onEvent?: (event: TunnelEvent) => void;
}

export interface ExposedService {
  /** Peer connections waiting for OPEN, and tunnels running. */
  stats(): { idle: number; active: number; total: number };
  /** Stops taking connections and closes idle ones; running tunnels finish on their own. */
  close(): void;
}

/** How long a refused connection may take to flush its refusal before it is destroyed. */
const REFUSAL_LINGER_MS = 2000;

export function exposeService(peer: Peer, options: ExposeOptions): ExposedService {
  const { to, connectTimeoutMs = 5000, maxIdle = 64, pump = defaultPump, onEvent = () => {} } = options;
  const { encrypt = true, handshakeTimeoutMs = 10_000 } = options;
  const key = serviceKey(options.key);
  const allow = options.allow ? new Set(options.allow) : undefined;
  const idle = new Set<Socket | Duplex>();
  let active = 0;
  let total = 0;
  let closed = false;

  const onConnection = (socket: Socket | Duplex, info: ConnectionInfo): void => {
    if (closed) {
      socket.destroy();
      return;
    }
    socket.on('error', () => {});
    idle.add(socket);
    if (idle.size > maxIdle) {
      const oldest = idle.values().next().value!;
      idle.delete(oldest);
      oldest.destroy();
    }
    if (socket instanceof Socket) socket.setKeepAlive(true, 15_000);
    void serve(socket, info);
  };

  const serve = async (socket: Socket | Duplex, info: ConnectionInfo): Promise<void> => {
    let stream: Duplex;
    try {
      stream = await exposerHandshake(socket, {
        key,
        encrypt,
        selfId: peer.id,
        peerId: info.peerId,
        allowed: !allow || allow.has(info.peerId),
        timeoutMs: handshakeTimeoutMs,
      });
      stream.on('error', () => {});
      await awaitOpen(stream);
    } catch (err) {
      idle.delete(socket);
      const e = err as TcpPunchError;
      // A spare the other side dropped is routine; a refused or garbled handshake is worth a line.
      if (e.code?.startsWith('ERR_')) onEvent({ type: 'fail', peerId: info.peerId, code: e.code, message: e.message });
      if (!(e as { refusal?: boolean }).refusal) return void socket.destroy();
      // Destroying it at once could reset the connection before the refusal is read.
      const linger = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
      socket.once('close', () => clearTimeout(linger));
      return;
    }
    idle.delete(socket);
    if (closed) {
      stream.destroy();
      return;
    }
    const started = Date.now();
    let service: Socket;
    try {
      service = await connectTo(to, connectTimeoutMs);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERR_SERVICE';
      onEvent({ type: 'fail', peerId: info.peerId, code, message: `cannot reach ${to.host}:${to.port}: ${(err as Error).message}` });
      stream.end(Buffer.from([NAK]));
      return;
    }
    active++;
    total++;
    onEvent({ type: 'open', peerId: info.peerId, path: info.path, family: info.family, attempt: info.attempt, connectMs: info.timings.totalMs, waitMs: Date.now() - started });
    // The pump writes ACK itself, before it relays a byte: nothing is queued in JS when it takes the sockets.
    let result: PumpResult;
    try {
      result = await bridge(service, stream, pump, Buffer.from([ACK]));
    } catch (err) {
      service.destroy();
      stream.destroy();
      result = failedResult(err as Error);
    }
    const report = await endReport(result, info.relayEnd);
    active--;
    onEvent({ type: 'close', peerId: info.peerId, path: info.path, ...report });
  };

  peer.on('connection', onConnection);
  return {
    stats: () => ({ idle: idle.size, active, total }),
    close: () => {
      closed = true;
      peer.off('connection', onConnection);
      for (const s of idle) s.destroy();
      idle.clear();
    },
  };
}

function connectTo({ host, port }: Endpoint, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.pause();
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
