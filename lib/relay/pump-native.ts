/**
 * The native pump: the addon's I/O thread relays the bytes (splice(2) through pooled pipes on Linux, a buffer
 * elsewhere), so no relayed byte ever enters JavaScript.
 *
 * Handover without losing a byte: `start()` checks that neither socket has anything buffered in JS, has the addon
 * duplicate both fds, and destroys the JS sockets in the same synchronous step. Node cannot read from a socket
 * between these steps (that would take a turn of its event loop), so from then on every byte the peers send sits
 * in the kernel until the pump reads it. The `head` frames are written by the pump itself, before it relays a
 * byte, so nothing written from JS can be left queued in Node either.
 *
 * {@link nativePump} is undefined where the addon cannot be loaded or predates the pump.
 */
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { fdOf, fromNative, native as binding, requireNative } from '../native.js';
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
} from './pump-types.js';

/** The addon's pump functions (native/binding_pump.cc). */
interface NativePumpBinding {
  /** Where every session's end is reported; set once, before the first pumpStart. */
  pumpOnDone(
    onDone: (
      id: number,
      bytesAToB: number,
      bytesBToA: number,
      reason: PumpEndReason,
      error: string | undefined,
      side: 'a' | 'b' | undefined,
      durationMs: number,
    ) => void,
  ): void;
  /**
   * Starts relaying between two connected stream sockets. The addon duplicates both fds at once: the caller must
   * then close its own (destroy its net.Sockets) in the same tick, before Node can read from them again.
   */
  pumpStart(fdA: number, fdB: number, options: NativePumpOptions): number;
  pumpStop(id: number, reason?: PumpStopReason): void;
  pumpStats(): Omit<PumpStats, 'kind'> & Required<NativePumpConfig> & { started: number; completed: number; threadRunning: boolean };
  pumpConfigure(config: NativePumpConfig): void;
}
/** Pool sizes of the native pump (see native/pipe_pool.h); absent keys keep their value. */
export interface NativePumpConfig {
  /** Pipes in all, idle or in use (Linux; default 64). 0 disables splice. Each costs 2 fds. */
  maxPipes?: number;
  /** Size asked of each pipe with F_SETPIPE_SZ (default 1 MiB). */
  pipeSize?: number;
  /** Copy buffers in all (default 256), used where splice is unavailable or all pipes are busy. */
  maxBuffers?: number;
  /** Size of a copy buffer (default 64 KiB). */
  bufferSize?: number;
  /** Idle pipes and buffers kept for reuse while sessions run (default 16 of each). */
  maxIdle?: number;
}

/** @internal Options of the native pump beyond the common ones (tests use `splice: false`). */
export interface NativePumpOptions extends PumpOptions {
  /** false: copy through a buffer even where splice works. */
  splice?: boolean;
  /** The pump takes the fds themselves (startAdopted). */
  adopt?: boolean;
}

/** The addon's pump, unless the addon is absent or predates it. */
const native: NativePumpBinding | undefined = (() => {
  const b = binding as Partial<NativePumpBinding> | undefined;
  return typeof b?.pumpStart === 'function' && typeof b.pumpOnDone === 'function' ? (b as NativePumpBinding) : undefined;
})();

/** One running session: its id, its end callback, and `done` made only if someone asks for it. */
class NativeSession implements PumpSession {
  private result: PumpResult | undefined;
  private promise: Promise<PumpResult> | undefined;
  private resolve: ((r: PumpResult) => void) | undefined;
  constructor(
    private readonly n: NativePumpBinding,
    readonly id: number,
    private readonly onEnd: ((r: PumpResult) => void) | undefined,
  ) {}
  get done(): Promise<PumpResult> {
    this.promise ??= this.result ? Promise.resolve(this.result) : new Promise<PumpResult>((r) => (this.resolve = r));
    return this.promise;
  }
  stop(reason: PumpStopReason = 'stopped'): void {
    if (!this.result) this.n.pumpStop(this.id, reason);
  }
  end(r: PumpResult): void {
    this.result = r;
    this.onEnd?.(r);
    this.resolve?.(r);
  }
}

/** The native pump, and {@link NativePumpFds.startAdopted} for fds nobody else holds. */
interface NativePumpFds extends Pump {
  /**
   * Starts a session on two connected stream sockets' fds that the pump takes over (released held connections,
   * native-legs.ts). If it throws, the fds are still the caller's.
   */
  startAdopted(fdA: number, fdB: number, options?: PumpOptions): PumpSession;
}

function createNativePump(n: NativePumpBinding): NativePumpFds {
  const live = new Map<number, NativeSession>();
  n.pumpOnDone((id, bytesAToB, bytesBToA, reason, error, side, durationMs) => {
    const s = live.get(id);
    if (!s) return;
    live.delete(id);
    const r: PumpResult = { bytesAToB, bytesBToA, reason, durationMs };
    if (error !== undefined) r.error = error;
    if (side !== undefined) r.side = side;
    s.end(r);
  });
  const begin = (fdA: number, fdB: number, options: NativePumpOptions, adopt: boolean): PumpSession => {
    const { maxBytes, maxDurationMs, idleTimeoutMs, headA, headB, onEnd } = checkPumpOptions(options);
    let id: number;
    try {
      const opts: Parameters<NativePumpBinding['pumpStart']>[2] = { maxBytes, maxDurationMs, idleTimeoutMs };
      if (headA) opts.headA = headA;
      if (headB) opts.headB = headB;
      if (options.splice === false) opts.splice = false;
      if (adopt) opts.adopt = true;
      id = n.pumpStart(fdA, fdB, opts);
    } catch (err) {
      throw fromNative(err);
    }
    const session = new NativeSession(n, id, onEnd);
    live.set(id, session);
    return session;
  };
  return {
    kind: 'native',
    start(a: Socket, b: Socket, options: NativePumpOptions = {}): PumpSession {
      checkPumpSockets(a, b);
      const session = begin(fdOf(a, 'a', 'ERR_PUMP_SOCKET'), fdOf(b, 'b', 'ERR_PUMP_SOCKET'), options, false);
      // Same tick as the dup: Node never reads these sockets again. Their 'close' events still fire.
      a.destroy();
      b.destroy();
      return session;
    },
    startAdopted(fdA: number, fdB: number, options: NativePumpOptions = {}): PumpSession {
      return begin(fdA, fdB, options, true);
    },
    stats(): PumpStats {
      const s = n.pumpStats();
      return {
        kind: 'native',
        sessions: s.sessions,
        waiting: s.waiting,
        pipesIdle: s.pipesIdle,
        pipesInUse: s.pipesInUse,
        buffersIdle: s.buffersIdle,
        buffersInUse: s.buffersInUse,
      };
    },
  };
}

/** The native pump, or undefined where the addon is unavailable. */
export const nativePump: NativePumpFds | undefined = native ? createNativePump(native) : undefined;

/**
 * Sets the native pump's pool sizes (process-wide for this thread's addon instance).
 * @throws TcpPunchError `ERR_NATIVE_UNAVAILABLE` without the addon, `ERR_PUMP_UNAVAILABLE` with an addon that
 *   predates the pump.
 */
export function configureNativePump(config: NativePumpConfig): void {
  requireNative('the native relay pump');
  if (!native) throw new TcpPunchError('ERR_PUMP_UNAVAILABLE', 'the native pump is not available');
  native.pumpConfigure(config);
}

/** @internal The addon's pump functions themselves, for the tests of its argument checks. */
export const nativePumpBinding: NativePumpBinding | undefined = native;

/** @internal The native pump's raw counters and configuration, for tests and metrics. */
export function nativePumpStats(): ReturnType<NativePumpBinding['pumpStats']> | undefined {
  return native?.pumpStats();
}
