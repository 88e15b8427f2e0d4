/**
 * startTunnelClient(): listens on a local address and carries each local connection to a peer's exposed service
 * over a punched (or relayed) connection taken from a pool of spares.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Endpoint } from '../endpoint.js';
import { TcpPunchError } from '../errors.js';
import type { Peer } from '../peer/index.js';
import type { DialOptions } from '../peer/types.js';
import { defaultPump, type Pump, type PumpResult } from '../relay/pump.js';
import { drainThenBridge, failedResult } from './bridge.js';
import type { TunnelEvent } from './expose.js';
import { ConnectionPool } from './pool.js';
import { ACK, OPEN, readFirstByte } from './wire.js';

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
  /** Deadline for the exposing side's answer; default 10000 ms. */
  answerTimeoutMs?: number;
  pump?: Pump;
  onEvent?: (event: TunnelEvent) => void;
}

export interface TunnelClient {
  address(): AddressInfo;
  stats(): { active: number; total: number; spares: number };
  /** Stops listening, drops the spares and clients still waiting; tunnels already relaying finish on their own. */
  close(): Promise<void>;
}

export async function startTunnelClient(peer: Peer, options: TunnelClientOptions): Promise<TunnelClient> {
  const { peerId, listen, strategy, dialTimeoutMs = 15_000, poolSize = 2, answerTimeoutMs = 10_000 } = options;
  const { pump = defaultPump, onEvent = () => {} } = options;
  // A name from the command line: dial() validates it (ERR_INVALID_ARG_VALUE) at run time.
  const dialOptions: DialOptions = { timeoutMs: dialTimeoutMs, ...(strategy ? { strategy: strategy as NonNullable<DialOptions['strategy']> } : {}) };
  // Spares that keep failing for the same reason (peer offline, say) are reported once, not at every retry.
  let lastRefillCode: string | undefined;
  const pool = new ConnectionPool({
    size: poolSize,
    dial: async () => {
      const result = await peer.dial(peerId, dialOptions);
      lastRefillCode = undefined;
      return result;
    },
    onRefillError: (err) => {
      const code = (err as TcpPunchError).code ?? 'ERR_DIAL';
      if (code === lastRefillCode) return;
      lastRefillCode = code;
      onEvent({ type: 'fail', peerId, code, message: `cannot open a spare connection: ${err.message}` });
    },
  });
  const locals = new Set<Socket>();
  let active = 0;
  let total = 0;

  const handle = async (local: Socket): Promise<void> => {
    const started = Date.now();
    local.on('error', () => {});
    locals.add(local);
    local.once('close', () => locals.delete(local));
    let taken;
    try {
      taken = await pool.take();
    } catch (err) {
      const e = err as TcpPunchError;
      onEvent({ type: 'fail', peerId, code: e.code ?? 'ERR_DIAL', message: e.message });
      local.destroy();
      return;
    }
    const { result } = taken;
    const tunnel = result.socket;
    if (local.destroyed) {
      tunnel.destroy();
      return;
    }
    let answer;
    try {
      tunnel.write(Buffer.from([OPEN]));
      answer = await readFirstByte(tunnel as Socket, answerTimeoutMs);
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
    onEvent({ type: 'open', peerId, path: result.path, attempt: result.attempt, connectMs: result.timings.totalMs, waitMs: Date.now() - started });
    let end: PumpResult;
    try {
      end = await drainThenBridge(local, tunnel, pump, answer.rest);
    } catch (err) {
      local.destroy();
      tunnel.destroy();
      end = failedResult(err as Error);
    }
    active--;
    onEvent({ type: 'close', peerId, path: result.path, result: end });
  };

  // pauseOnConnect: nothing from the local client is read into JS before the pump takes the socket.
  const server = createServer({ pauseOnConnect: true, noDelay: true }, (local) => void handle(local));
  server.listen(listen.port, listen.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  pool.start();
  return {
    address: () => server.address() as AddressInfo,
    stats: () => ({ active, total, spares: pool.ready }),
    close: async () => {
      pool.close();
      const closed = new Promise((r) => server.close(r));
      for (const s of locals) s.destroy();
      await closed;
    },
  };
}
