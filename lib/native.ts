/**
 * The addon, present or not, decided here once: a prebuild from prebuilds/<platform>-<arch> when one matches, else
 * build/Release (node-gyp-build's order). Nothing else in lib/ loads or touches the binding: a module that needs it
 * asks {@link requireNative} at call time, and a module that can do without it reads {@link native}. Without the
 * addon the library still loads: the server, the relay with the JS pump, the protocol and the CLI's `serve` work;
 * punching, reusable ports and the native pump throw `ERR_NATIVE_UNAVAILABLE`.
 * @internal
 */
import { createRequire } from 'node:module';
import type { Server, Socket } from 'node:net';
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
  /** The kernel's round-trip estimate of a connected TCP socket in µs (throws ENOTSUP off Linux). */
  socketRtt(fd: number): number;
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
}

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Loads the addon, or returns why it could not. `TCP_PUNCH_ADDON` names a specific build to load instead (the
 * sanitizer run loads build-asan/Release/tcp_punch.node; a path that does not exist shows the library without it).
 */
function load(): { binding: Binding; error?: undefined } | { binding?: undefined; error: Error } {
  try {
    const path = process.env.TCP_PUNCH_ADDON;
    const binding = (path ? require(path) : (require('node-gyp-build') as (dir: string) => unknown)(root)) as Binding;
    return { binding };
  } catch (err) {
    return { error: err instanceof Error ? err : new Error(String(err)) };
  }
}

const loaded = load();

/** The loaded addon, or undefined where none could be loaded ({@link nativeLoadError} says why). */
export const native: Binding | undefined = loaded.binding;

/** Why the addon did not load: none found, or one found that cannot load here (an older glibc, say). */
export const nativeLoadError: Error | undefined = loaded.error;

/**
 * The addon, for `what` (the operation that needs it, e.g. "punch()").
 * @throws TcpPunchError `ERR_NATIVE_UNAVAILABLE` without it, saying where it was looked for and how to get it; the
 *   load error is its `cause`.
 */
export function requireNative(what: string): Binding {
  if (native) return native;
  const where = process.env.TCP_PUNCH_ADDON ?? `${join(root, 'prebuilds', `${process.platform}-${process.arch}`)} or ${join(root, 'build', 'Release')}`;
  const why = nativeLoadError?.message.split('\n')[0] ?? 'not found';
  throw new TcpPunchError(
    'ERR_NATIVE_UNAVAILABLE',
    `${what} needs the tcp-punch native addon, which did not load from ${where} (${why}). ` +
      'Install a C++ toolchain (make, g++, python3) and run `npm rebuild tcp-punch`, ' +
      'or use a platform with a prebuild (linux-x64 or linux-arm64 with glibc 2.36 or later)',
    { cause: nativeLoadError },
  );
}

/**
 * The file descriptor of a connected net.Socket, for an addon call.
 * @throws TcpPunchError `code` when the socket has none (not a TCP socket, or already closed).
 */
export function fdOf(socket: Socket, name: string, code: string): number {
  const fd = handleFd(socket);
  if (fd === undefined) throw new TcpPunchError(code, `socket ${name} has no file descriptor (not a TCP socket?)`);
  return fd;
}

/**
 * Node keeps a TCP socket's (or a listening server's) descriptor on its handle; a TLS socket's handle, a closed
 * socket or a server not yet listening has none.
 */
export function handleFd(socket: Socket | Server): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The kernel's round-trip estimate of a connected socket in ms: the path's own round trip, which no processing
 * delay of either end inflates. Undefined without the addon, off Linux, for a socket with no descriptor (TLS) or no
 * sample yet.
 */
export function kernelRttMs(socket: Socket): number | undefined {
  const fd = handleFd(socket);
  if (!native || fd === undefined) return undefined;
  try {
    const us = native.socketRtt(fd);
    return us > 0 ? us / 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Converts an addon error (errno `code`) into a {@link TcpPunchError}; argument errors and errors that already are
 * TcpPunchErrors pass through unchanged.
 */
export function fromNative(err: unknown): Error {
  if (err instanceof TcpPunchError || err instanceof TypeError || err instanceof RangeError || !(err instanceof Error)) return err as Error;
  const { code, errno, syscall, attempts, lastErrors } = err as NativeError;
  return new TcpPunchError(code ?? 'ERR_NATIVE', err.message, { errno, syscall, attempts, lastErrors, cause: err });
}
