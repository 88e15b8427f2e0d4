/**
 * Errors raised by tcp-punch.
 *
 * Every error a caller may want to branch on carries a stable string `code`:
 * - an errno name (`EADDRINUSE`, `ECONNREFUSED`, `ETIMEDOUT`, ...) when it comes from the operating system;
 * - `ABORT_ERR` when an AbortSignal cancelled the operation (the same code Node uses);
 * - an `ERR_*` code for everything tcp-punch decides itself. Each module documents the codes it raises.
 *
 * Invalid arguments are thrown synchronously as `TypeError` / `RangeError` with `code` set to
 * `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` / `ERR_OUT_OF_RANGE`, as Node's own APIs do.
 */

/** Extra fields attached to a {@link TcpPunchError}. */
export type ErrorDetails = Record<string, unknown> & { cause?: unknown };

/** The base class of every non-argument error tcp-punch raises. */
export class TcpPunchError extends Error {
  /** Stable, documented error code: an errno name or an `ERR_*` / `ABORT_ERR` string. */
  readonly code: string;

  constructor(code: string, message: string, details: ErrorDetails = {}) {
    const { cause, ...rest } = details;
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TcpPunchError';
    this.code = code;
    Object.assign(this, rest);
  }
}

/** Raised when an AbortSignal ends an operation; `code` is `ABORT_ERR` as in Node's own APIs. */
export class AbortError extends TcpPunchError {
  constructor(message = 'The operation was aborted', cause?: unknown) {
    super('ABORT_ERR', message, { cause });
    this.name = 'AbortError';
  }
}

/** Throws the signal's abort reason wrapped in an {@link AbortError} if it is already aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(undefined, signal.reason);
}

/** A TypeError with Node's `ERR_INVALID_ARG_TYPE` code. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`);
  return Object.assign(err, { code: 'ERR_INVALID_ARG_TYPE' });
}

/** A RangeError (or TypeError for non-numeric values) with Node's `ERR_INVALID_ARG_VALUE` code. */
export function invalidArgValue(name: string, reason: string, actual: unknown): RangeError {
  const err = new RangeError(`The argument "${name}" ${reason}. Received ${describe(actual)}`);
  return Object.assign(err, { code: 'ERR_INVALID_ARG_VALUE' });
}

/** A RangeError with Node's `ERR_OUT_OF_RANGE` code. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  const err = new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`);
  return Object.assign(err, { code: 'ERR_OUT_OF_RANGE' });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return `${typeof value} (${String(value)})`;
}
