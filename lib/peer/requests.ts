/**
 * The dialing side's `connect` requests: each waits (through reconnects) for a usable control connection, asks
 * the server, and settles with its coordination's result, the server's `reject`, the dial's deadline or an abort.
 * A dial that ends before the server coordinated it is reported as an `attempt` event with `attempt: 0`.
 */
import { AbortError, TcpPunchError } from '../errors.js';
import type { Message } from '../protocol/messages.js';
import { outcomeOf } from './attempt.js';
import type { PeerCoordination } from './coordination.js';
import type { AttemptEvent, DialResult } from './types.js';

/** A request waiting for the server's answer. */
export interface PendingRequest {
  peerId: string;
  startedAt: number;
  onCoord(pc: PeerCoordination): void;
  onReject(err: TcpPunchError): void;
}

/** What the requests need from their peer. */
export interface RequestHost {
  /** True once the peer closed for good. */
  closed(): boolean;
  /** The control connection when a request may go out on it (registered, not draining). */
  usable(): { send(msg: Message): boolean } | undefined;
  /** Calls `fn` at the next registration (or close); `unwait` takes it back. */
  waitOnline(fn: () => void): void;
  unwait(fn: () => void): void;
  attempt(ev: AttemptEvent): void;
}

/** The requests of one peer, by reqId. */
export class ConnectRequests {
  private seq = 0;
  private readonly pending = new Map<number, PendingRequest>();

  constructor(private readonly host: RequestHost) {}

  /** The request a `coord` (or `reject`) with `reqId` answers, while it waits. */
  get(reqId: number): PendingRequest | undefined {
    return this.pending.get(reqId);
  }

  /** Fails every waiting request with `err`. */
  failAll(err: TcpPunchError): void {
    for (const r of [...this.pending.values()]) r.onReject(err);
    this.pending.clear();
  }

  /**
   * One server-coordinated dial on `path`. `coordIdOut` receives the coordination's id (hex) once the server has
   * answered, for a relay-upgradable dial's later `link`.
   */
  dial(
    peerId: string,
    path: 'direct' | 'relay' | 'relay-upgradable',
    timeoutMs: number,
    signal: AbortSignal,
    link?: string,
    coordIdOut?: { value: string },
  ): Promise<DialResult> {
    const startedAt = performance.now();
    const host = this.host;
    return new Promise<DialResult>((resolve, reject) => {
      let pc: PeerCoordination | undefined;
      let reqId = 0;
      let done = false;
      const finish = (err: Error | undefined, res?: DialResult): void => {
        if (done) return void res?.socket.destroy();
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        host.unwait(send);
        this.pending.delete(reqId);
        if (err) {
          if (!pc) host.attempt(rejected(peerId, err));
          reject(err);
        } else resolve(res!);
      };
      const stop = (err: TcpPunchError): void => {
        finish(err);
        pc?.cancel(err, true);
      };
      const timer = setTimeout(() => stop(new TcpPunchError('ETIMEDOUT', `Dial to ${peerId} timed out after ${timeoutMs} ms`, { peerId })), timeoutMs);
      const onAbort = (): void => stop(new AbortError(undefined, signal.reason));
      signal.addEventListener('abort', onAbort, { once: true });
      const send = (): void => {
        host.unwait(send);
        if (done) return;
        if (host.closed()) return finish(new TcpPunchError('ERR_PEER_CLOSED', 'The peer is closed'));
        const conn = host.usable();
        if (!conn) return void host.waitOnline(send); // wait for (re)registration
        reqId = this.seq = (this.seq % 0xfffffffe) + 1;
        this.pending.set(reqId, {
          peerId,
          startedAt,
          onCoord: (c) => {
            pc = c;
            if (coordIdOut) coordIdOut.value = c.key;
            this.pending.delete(reqId);
            c.result.then((r) => finish(undefined, r), (e: Error) => finish(e));
          },
          onReject: (e) => finish(Object.assign(e, { peerId })),
        });
        const left = Math.max(1, Math.floor(timeoutMs - (performance.now() - startedAt)));
        const linkBytes = link ? Buffer.from(link, 'hex') : Buffer.alloc(16);
        conn.send({ type: 'connect', reqId, target: peerId, path, timeoutMs: left, link: linkBytes });
      };
      send();
    });
  }
}

/** The `attempt` event of a dial that ended before the server coordinated it (rejected, timed out, aborted). */
function rejected(peerId: string, err: Error): AttemptEvent {
  const code = (err as { code?: unknown }).code;
  return {
    peerId,
    coordId: '',
    role: 'initiator',
    attempt: 0,
    mode: undefined,
    route: undefined,
    remote: undefined,
    family: undefined,
    outcome: code === 'ERR_PEER_OFFLINE' ? 'peer-offline' : outcomeOf(err),
    code: typeof code === 'string' ? code : undefined,
    message: err.message,
    elapsedMs: 0,
  };
}
