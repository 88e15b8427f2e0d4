/**
 * The pure-JS pump: the fallback where the addon's pump is unavailable, and the benchmark's baseline.
 *
 * Same contract as the native pump (see pump-types.ts): each direction is `data` -> `write()` with backpressure
 * (the source pauses until the destination drains), `end` becomes `end()` on the other socket (half-close: both
 * sockets are switched to `allowHalfOpen`), byte limits are charged as chunks arrive, and every end other than
 * `eof` resets both sockets.
 */
import type { Socket } from 'node:net';

import {
  type Pump,
  type PumpEndReason,
  type PumpOptions,
  type PumpResult,
  type PumpSession,
  type PumpStats,
  type PumpStopReason,
  checkPumpOptions,
  checkPumpSockets,
  classifyError,
} from './pump-types.js';

let nextId = 1;
let active = 0;

class JsPumpSession implements PumpSession {
  readonly id = nextId++;
  readonly done: Promise<PumpResult>;
  private resolve!: (r: PumpResult) => void;
  private readonly sockets: [Socket, Socket];
  private readonly bytes = [0, 0];
  private readonly ended = [false, false];
  private readonly closed = [false, false];
  private allowance: number;
  private readonly startedAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastActive = Date.now();
  private settled = false;
  private result: Omit<PumpResult, 'bytesAToB' | 'bytesBToA' | 'durationMs'> | undefined;
  private readonly onEnd: ((r: PumpResult) => void) | undefined;

  constructor(a: Socket, b: Socket, options: ReturnType<typeof checkPumpOptions>) {
    this.done = new Promise((resolve) => (this.resolve = resolve));
    this.sockets = [a, b];
    this.onEnd = options.onEnd;
    this.allowance = options.maxBytes > 0 ? options.maxBytes : Infinity;
    active++;
    for (const s of this.sockets) s.allowHalfOpen = true;
    if (options.headA?.length) a.write(options.headA);
    if (options.headB?.length) b.write(options.headB);
    this.wire(0);
    this.wire(1);
    // A caller may have paused a socket explicitly (so nothing is read before the handover): 'data' listeners
    // alone do not restart such a stream.
    a.resume();
    b.resume();
    if (options.maxDurationMs > 0) {
      this.timer = setTimeout(() => this.end('limit-duration'), options.maxDurationMs);
      this.timer.unref();
    }
    if (options.idleTimeoutMs > 0) this.armIdle(options.idleTimeoutMs, options.idleTimeoutMs);
  }

  /** Checks for idleness `inMs` from now; traffic meanwhile only moves the next check (no timer per chunk). */
  private armIdle(idleMs: number, inMs: number): void {
    this.idleTimer = setTimeout(() => {
      const idleFor = Date.now() - this.lastActive;
      if (idleFor >= idleMs) this.end('limit-idle');
      else this.armIdle(idleMs, idleMs - idleFor);
    }, inMs);
    this.idleTimer.unref();
  }

  stop(reason: PumpStopReason = 'stopped'): void {
    this.end(reason);
  }

  /** Direction i: from sockets[i] to sockets[1 - i]. */
  private wire(i: number): void {
    const src = this.sockets[i]!;
    const dst = this.sockets[1 - i]!;
    const side = i === 0 ? 'a' : 'b';
    src.on('data', (chunk: Buffer) => {
      if (this.result) return;
      let c = chunk;
      if (c.length > this.allowance) {
        c = c.subarray(0, this.allowance);
        this.allowance = 0;
        if (c.length > 0) this.forward(i, dst, c);
        this.end('limit-bytes');
        return;
      }
      this.allowance -= c.length;
      if (!this.forward(i, dst, c)) src.pause();
    });
    dst.on('drain', () => {
      if (!this.result) src.resume();
    });
    src.on('end', () => {
      if (this.result) return;
      this.ended[i] = true;
      dst.end();
    });
    src.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'ERR_SOCKET';
      this.end(classifyError(code), code, side);
    });
    src.on('close', () => {
      this.closed[i] = true;
      // A socket closes on its own only once both of its directions are done, or when destroyed from outside.
      if (!this.result && !(this.ended[i] && this.ended[1 - i])) this.end('error', 'ERR_SOCKET_CLOSED', side);
      this.settle();
    });
  }

  private forward(i: number, dst: Socket, chunk: Buffer): boolean {
    this.bytes[i]! += chunk.length;
    this.lastActive = Date.now();
    return dst.write(chunk);
  }

  private end(reason: PumpEndReason, error?: string, side?: 'a' | 'b'): void {
    if (this.result) return;
    this.result = { reason };
    if (error !== undefined) this.result.error = error;
    if (side !== undefined) this.result.side = side;
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    // A RST, not a FIN: the peer still reading must not take a cut stream for a complete one.
    for (const s of this.sockets) reset(s);
    this.settle();
  }

  /** Resolves once both sockets have closed (so their fds are gone, as with the native pump). */
  private settle(): void {
    if (!this.closed[0] || !this.closed[1] || this.settled) return;
    this.settled = true;
    this.result ??= { reason: 'eof' };
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    active--;
    const r: PumpResult = { bytesAToB: this.bytes[0]!, bytesBToA: this.bytes[1]!, ...this.result, durationMs: Date.now() - this.startedAt };
    this.onEnd?.(r);
    this.resolve(r);
  }
}

function reset(s: Socket): void {
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy(); // not a TCP handle (a Unix socket, say): no RST to send
  }
}

/** The pure-JS pump. */
export const jsPump: Pump = {
  kind: 'js',
  start(a: Socket, b: Socket, options: PumpOptions = {}): PumpSession {
    checkPumpSockets(a, b);
    return new JsPumpSession(a, b, checkPumpOptions(options));
  },
  stats(): PumpStats {
    return { kind: 'js', sessions: active, waiting: 0, pipesIdle: 0, pipesInUse: 0, buffersIdle: 0, buffersInUse: 0 };
  },
};
