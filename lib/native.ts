/**
 * Loads the addon (a prebuild from prebuilds/ when one matches, else build/Release) and types its surface.
 * Internal: the rest of lib/ goes through this module and never touches the binding directly.
 * @internal
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TcpPunchError } from './errors.js';

/** `{ host, port }` as the addon reads and writes it: `host` is always a numeric IP. */
export interface NativeEndpoint {
  host: string;
  port: number;
}

export interface NativeBound extends NativeEndpoint {
  fd: number;
}

export interface NativePunchOptions {
  local: NativeEndpoint;
  listenFd?: number;
  listen: boolean;
  targets: NativeEndpoint[];
  timeoutMs: number;
  /** Pause before reconnecting after a retryable error; -1 makes the first failure final. */
  retryMs: number;
  firstTtl: number;
  /** Accept a target's address from any port (reverse mode: the peer's NAT may remap its port). */
  acceptAnyPort?: boolean;
}

export interface NativePunchResult {
  fd: number;
  via: 'connect' | 'accept';
  local: NativeEndpoint;
  remote: NativeEndpoint;
  attempts: number;
  lastErrors: (string | null)[];
  elapsedMs: number;
}

/** An Error from the addon: `code` is an errno name, `errno` the negative errno, `syscall` the failing call. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  attempts?: number;
  lastErrors?: (string | null)[];
}

export interface Binding {
  socketBind(local: NativeEndpoint, listen: boolean): NativeBound;
  socketClose(fd: number): void;
  /**
   * With `onCandidate` the punch hands every connection there (the callee owns the fd) and runs on until
   * `punchAbort(id)` or its deadline; `callback` then only reports how it ended (an error).
   */
  punchStart(
    options: NativePunchOptions,
    callback: (err: NativeError | null, result: NativePunchResult) => void,
    onCandidate?: (candidate: Omit<NativePunchResult, 'lastErrors'>) => void,
  ): number;
  punchAbort(id: number): void;

  // The relay pump (native/pump.h); lib/relay/pump-native.ts wraps it.
  /**
   * Starts relaying between two connected stream sockets. The addon duplicates both fds at once: the caller must
   * then close its own (destroy its net.Sockets) in the same tick, before Node can read from them again.
   * `maxBytes` bounds both directions together; 0 or absent means no limit, as for `maxDurationMs`.
   * `headA` / `headB` are sent to A / B before any relayed byte and are not counted.
   */
  pumpStart(
    fdA: number,
    fdB: number,
    options: {
      maxBytes?: number;
      maxDurationMs?: number;
      idleTimeoutMs?: number;
      headA?: Uint8Array;
      headB?: Uint8Array;
      splice?: boolean;
    },
    onDone: (result: {
      bytesAToB: number;
      bytesBToA: number;
      reason: 'eof' | 'error' | 'reset' | 'limit-bytes' | 'limit-duration' | 'limit-idle' | 'stopped';
      /** errno name, with reason 'error' or 'reset'. */
      error?: string;
      /** Whose socket failed, with reason 'error' or 'reset'. */
      side?: 'a' | 'b';
      durationMs: number;
    }) => void,
  ): number;
  pumpStop(id: number, reason?: 'stopped' | 'limit-bytes' | 'limit-duration' | 'limit-idle'): void;
  pumpStats(): {
    sessions: number;
    waiting: number;
    pipesIdle: number;
    pipesInUse: number;
    buffersIdle: number;
    buffersInUse: number;
    started: number;
    completed: number;
    threadRunning: boolean;
    maxPipes: number;
    pipeSize: number;
    maxBuffers: number;
    bufferSize: number;
  };
  pumpConfigure(config: { maxPipes?: number; pipeSize?: number; maxBuffers?: number; bufferSize?: number; maxIdle?: number }): void;
}

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const load = require('node-gyp-build') as (dir: string) => unknown;

/**
 * The loaded addon. `TCP_PUNCH_ADDON` names a specific build to load instead (the sanitizer run uses it to load
 * build-asan/Release/tcp_punch.node).
 */
export const binding = (process.env.TCP_PUNCH_ADDON ? require(process.env.TCP_PUNCH_ADDON) : load(root)) as Binding;

/** Converts an addon error (errno `code`) into a {@link TcpPunchError}; argument errors pass through unchanged. */
export function fromNative(err: unknown): Error {
  if (err instanceof TypeError || err instanceof RangeError || !(err instanceof Error)) return err as Error;
  const { code, errno, syscall, attempts, lastErrors } = err as NativeError;
  return new TcpPunchError(code ?? 'ERR_NATIVE', err.message, { errno, syscall, attempts, lastErrors });
}
