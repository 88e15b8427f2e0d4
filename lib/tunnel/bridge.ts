/**
 * bridge(): relays between two streams until both directions end, with the native pump when both are plain
 * sockets (no tunnelled byte enters JavaScript) and stream piping otherwise (a relay-first stream before it has
 * moved to its direct socket is a JS Duplex; an encrypted tunnel is a TLSSocket, whose bytes must pass through
 * TLS, so it is never handed to the pump although it is a net.Socket).
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { Pump, PumpResult } from '../relay/pump.js';

/**
 * Relays between `a` and `b`; resolves how it ended. Owns both streams from now on. `headB` is written to `b`
 * before any relayed byte. Throws what the pump's start() throws (then neither stream was touched).
 */
export function bridge(a: Socket, b: Socket | Duplex, pump: Pump, headB?: Uint8Array): Promise<PumpResult> {
  if (isPlainSocket(b)) return pump.start(a, b, headB ? { headB } : {}).done;
  if (headB) b.write(headB);
  return pipeBoth(a, b);
}

/**
 * Moves whatever `from` has already read into JS over to `to`, then bridges them once nothing is buffered in JS
 * on either side — the pump's precondition — so no byte is lost or reordered in the handover.
 */
export function drainThenBridge(to: Socket, from: Socket | Duplex, pump: Pump, first: Buffer): Promise<PumpResult> {
  if (first.length > 0) to.write(first);
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      let chunk: Buffer | null;
      while ((chunk = from.read() as Buffer | null) !== null) to.write(chunk);
      if (to.writableLength > 0) {
        to.once('drain', attempt);
        return;
      }
      try {
        bridge(to, from, pump).then(resolve, reject);
      } catch (err) {
        reject(err);
      }
    };
    attempt();
  });
}

function isPlainSocket(s: Socket | Duplex): s is Socket {
  return s instanceof Socket && !(s instanceof TLSSocket);
}

function pipeBoth(a: Duplex, b: Duplex): Promise<PumpResult> {
  const started = Date.now();
  let bytesAToB = 0;
  let bytesBToA = 0;
  let failure: { error: string; side: 'a' | 'b' } | undefined;
  return new Promise((resolve) => {
    let closed = 0;
    const onClose = (): void => {
      if (++closed < 2) return;
      resolve({
        bytesAToB,
        bytesBToA,
        reason: failure ? (failure.error === 'ECONNRESET' ? 'reset' : 'error') : 'eof',
        ...(failure ?? {}),
        durationMs: Date.now() - started,
      });
    };
    const wire = (from: Duplex, to: Duplex, side: 'a' | 'b', count: (n: number) => void): void => {
      from.on('data', (d: Buffer) => {
        count(d.length);
        if (!to.write(d)) from.pause();
      });
      to.on('drain', () => from.resume());
      from.on('end', () => to.end());
      from.on('error', (err: NodeJS.ErrnoException) => {
        failure ??= { error: err.code ?? 'ERR_STREAM', side };
        a.destroy();
        b.destroy();
      });
      from.once('close', onClose);
    };
    wire(a, b, 'a', (n) => (bytesAToB += n));
    wire(b, a, 'b', (n) => (bytesBToA += n));
    // Sockets made for the pump are paused (pauseOnConnect, or pause() after connect): a 'data' listener alone
    // would not start them.
    a.resume();
    b.resume();
  });
}

/** A PumpResult for a bridge that could not start (e.g. a socket closed in between). */
export function failedResult(err: Error): PumpResult {
  return { bytesAToB: 0, bytesBToA: 0, reason: 'error', error: (err as { code?: string }).code ?? 'ERR_BRIDGE', durationMs: 0 };
}
