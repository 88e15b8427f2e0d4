/**
 * exposeService(): offers a local TCP service to the peers that dial this one. Every authenticated peer
 * connection waits for the tunnel's OPEN byte (it may be a spare kept ready by the other side), then gets its own
 * connection to the service, and the two are bridged by the pump.
 */
import { Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Endpoint } from '../endpoint.js';
import type { Peer } from '../peer/index.js';
import type { ConnectionInfo } from '../peer/types.js';
import { defaultPump, type Pump, type PumpResult } from '../relay/pump.js';
import { bridge, failedResult } from './bridge.js';
import { ACK, NAK, OPEN, readFirstByte } from './wire.js';

export interface ExposeOptions {
  /** The local service. */
  to: Endpoint;
  /** Deadline to connect to the service; default 5000 ms. */
  connectTimeoutMs?: number;
  /** Peer connections kept waiting for OPEN at once (spares); the oldest is closed beyond this. Default 64. */
  maxIdle?: number;
  pump?: Pump;
  /** Called as tunnels open, fail and close. */
  onEvent?: (event: TunnelEvent) => void;
}

/** What a tunnel reports, on either side. */
export type TunnelEvent =
  | { type: 'open'; peerId: string; path: string; attempt: number; connectMs: number; waitMs: number }
  | { type: 'close'; peerId: string; path: string; result: PumpResult }
  | { type: 'fail'; peerId: string; code: string; message: string };

export interface ExposedService {
  /** Peer connections waiting for OPEN, and tunnels running. */
  stats(): { idle: number; active: number; total: number };
  /** Stops taking connections and closes idle ones; running tunnels finish on their own. */
  close(): void;
}

export function exposeService(peer: Peer, options: ExposeOptions): ExposedService {
  const { to, connectTimeoutMs = 5000, maxIdle = 64, pump = defaultPump, onEvent = () => {} } = options;
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
    let first;
    try {
      first = await readFirstByte(socket as Socket);
    } catch {
      idle.delete(socket);
      socket.destroy();
      return;
    } finally {
      idle.delete(socket);
    }
    if (first.byte !== OPEN || first.rest.length > 0 || closed) {
      socket.destroy();
      return;
    }
    const started = Date.now();
    let service: Socket;
    try {
      service = await connectTo(to, connectTimeoutMs);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERR_SERVICE';
      onEvent({ type: 'fail', peerId: info.peerId, code, message: `cannot reach ${to.host}:${to.port}: ${(err as Error).message}` });
      socket.end(Buffer.from([NAK]));
      return;
    }
    active++;
    total++;
    onEvent({ type: 'open', peerId: info.peerId, path: info.path, attempt: info.attempt, connectMs: info.timings.totalMs, waitMs: Date.now() - started });
    // The pump writes ACK itself, before it relays a byte: nothing is queued in JS when it takes the sockets.
    let result: PumpResult;
    try {
      result = await bridge(service, socket, pump, Buffer.from([ACK]));
    } catch (err) {
      service.destroy();
      socket.destroy();
      result = failedResult(err as Error);
    }
    active--;
    onEvent({ type: 'close', peerId: info.peerId, path: info.path, result });
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
    const socket = connect({ host, port, noDelay: true });
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
