/**
 * One native socket operation on Node's loop (the addon's listen + connect race, or a single connect): starts it,
 * adopts the connected descriptor as a `net.Socket`, and turns an AbortSignal into the addon's abort.
 * Both punch() and ReusablePort.connect() run through here.
 * @internal
 */
import { Socket } from 'node:net';
import { type Endpoint, familyOf, formatEndpoint, resolveEndpoints, validateEndpoint, validateInteger } from './endpoint.js';
import { AbortError, TcpPunchError, invalidArgType, throwIfAborted } from './errors.js';
import { fromNative, requireNative, type Binding, type NativePunchOptions } from './native.js';

/** Options of `ReusablePort.connect`. */
export interface ConnectOptions {
  /** Deadline in ms (default 10000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A connection the addon made: the adopted socket and how it arrived. */
export interface NativeConnection {
  socket: Socket;
  /** Our connect() completed, or the peer's SYN reached our listener first. */
  via: 'connect' | 'accept';
  local: Endpoint;
  remote: Endpoint;
  /** connect() calls made so far, across targets and retries. */
  attempts: number;
  elapsedMs: number;
}

/** The deadline of a native operation when the caller names none. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Throws a TypeError unless `signal` is absent or an AbortSignal. */
export function validateSignal(signal: unknown): asserts signal is AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an AbortSignal', signal);
}

/** One connect from a reusable local endpoint, no listener, no retries (ReusablePort.connect). */
export async function nativeConnect(local: Endpoint, remote: Endpoint, options: ConnectOptions): Promise<Socket> {
  validateEndpoint(remote, 'remote');
  const { timeoutMs = DEFAULT_TIMEOUT_MS, signal } = options;
  validateInteger(timeoutMs, 'options.timeoutMs', 1, 86_400_000);
  validateSignal(signal);
  throwIfAborted(signal);
  const targets = (await resolveEndpoints([remote])).filter((r) => familyOf(r.host) === familyOf(local.host));
  if (targets.length === 0) throw new TcpPunchError('ERR_NO_USABLE_ADDRESS', `no usable address for ${formatEndpoint(remote)}`);
  const result = await runNative({ local, listen: false, targets: targets.slice(0, 1), timeoutMs, retryMs: -1, firstTtl: 0 }, { signal });
  return result.socket;
}

/** How {@link runNative} delivers what the addon reports. */
export interface RunOptions {
  signal?: AbortSignal;
  allowHalfOpen?: boolean;
  /**
   * Receives every connection as an adopted socket while the operation goes on (the addon keeps its listener and
   * connectors); the operation then ends only through `signal` or its deadline, so the promise only rejects.
   */
  onCandidate?: (candidate: NativeConnection) => void;
}

/**
 * Runs one addon operation to its end: resolves the adopted connection, or rejects with a TcpPunchError (an
 * `ABORT_ERR` when `signal` ended it; `lastErrors` keyed by `host:port`).
 */
export function runNative(options: NativePunchOptions, run: RunOptions): Promise<NativeConnection> {
  const { signal, allowHalfOpen = false, onCandidate } = run;
  return new Promise((resolve, reject) => {
    const binding = requireNative('punch()');
    let id = 0;
    const onAbort = (): void => binding.punchAbort(id);
    const candidate = onCandidate
      ? (res: NativeConnectionRecord): void => {
          const c = adopt(binding, res, allowHalfOpen);
          if (c instanceof Error) return; // the fd is closed; the punch goes on
          onCandidate(c);
        }
      : undefined;
    try {
      id = binding.punchStart(
        options,
        (err, res) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) {
            if (err.code === 'ECANCELED' && signal?.aborted) reject(new AbortError(undefined, signal.reason));
            else reject(withTargets(fromNative(err), options.targets));
            return;
          }
          const c = adopt(binding, res, allowHalfOpen);
          if (c instanceof Error) reject(c);
          else resolve(c);
        },
        candidate,
      );
    } catch (err) {
      reject(fromNative(err));
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

type NativeConnectionRecord = Omit<NativeConnection, 'socket'> & { fd: number };

/** Wraps a connected fd from the addon in a net.Socket, or closes it and returns why that failed. */
function adopt(binding: Binding, res: NativeConnectionRecord, allowHalfOpen: boolean): NativeConnection | Error {
  let socket: Socket;
  try {
    socket = new Socket({ fd: res.fd, readable: true, writable: true, allowHalfOpen });
  } catch (adoptErr) {
    binding.socketClose(res.fd);
    return adoptErr as Error;
  }
  return { socket, via: res.via, local: res.local, remote: res.remote, attempts: res.attempts, elapsedMs: res.elapsedMs };
}

/** Replaces the addon's per-index `lastErrors` with a `{ "host:port": code }` record and names the targets. */
function withTargets(err: Error, targets: readonly Endpoint[]): Error {
  const e = err as Error & { code?: string; lastErrors?: unknown; attempts?: number };
  if (!Array.isArray(e.lastErrors)) return err;
  const last: Record<string, string> = {};
  e.lastErrors.forEach((code, i) => {
    if (typeof code === 'string' && targets[i]) last[formatEndpoint(targets[i])] = code;
  });
  e.lastErrors = last;
  if (e.code === 'ETIMEDOUT') {
    const seen = Object.entries(last).map(([t, c]) => `${t} ${c}`).join(', ');
    e.message = `punch timed out after ${e.attempts} attempt(s) to ${targets.map(formatEndpoint).join(', ')}${seen ? ` (last: ${seen})` : ''}`;
  }
  return err;
}
