/**
 * Exit codes of the `tcp-punch` command and the error that carries one.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success, or a clean shutdown on SIGINT/SIGTERM |
 * | 1 | a runtime failure not covered below |
 * | 2 | usage: unknown command or flag, a bad value |
 * | 3 | the server cannot be reached |
 * | 4 | authentication refused (wrong secret, id held by someone else) |
 * | 5 | the peer is unknown, offline or refused |
 * | 6 | a local address cannot be used (port in use, permission denied, address not available) |
 */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  UNREACHABLE: 3,
  AUTH: 4,
  PEER: 5,
  LOCAL_ADDRESS: 6,
} as const;

/** An error the CLI reports as one line and turns into an exit code. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.FAILURE, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Maps a library error to a user-facing message and exit code. */
export function toCliError(err: unknown, context: string): CliError {
  if (err instanceof CliError) return err;
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? '';
  const detail = e?.message ?? String(err);
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'ERR_SERVER_UNREACHABLE':
      return new CliError(`${context}: server unreachable (${code}): ${detail}`, EXIT.UNREACHABLE, { cause: err });
    case 'ERR_CLUSTER_UNAVAILABLE':
      // The message names the Redis URL with its password redacted.
      return new CliError(`${context}: cannot reach Redis (${code}): ${detail}`, EXIT.UNREACHABLE, { cause: err });
    case 'ERR_CLUSTER_UNSUPPORTED':
    case 'ERR_CLUSTER_NODE_ID_TAKEN':
      return new CliError(`${context}: ${detail} (${code})`, EXIT.USAGE, { cause: err });
    case 'ERR_AUTH_FAILED':
    case 'ERR_ID_TAKEN':
    case 'ERR_AUTH_REQUIRED':
      return new CliError(`${context}: authentication refused (${code}): ${detail}`, EXIT.AUTH, { cause: err });
    case 'ERR_PEER_OFFLINE':
    case 'ERR_PEER_UNKNOWN':
    case 'ERR_PEER_REFUSED':
      return new CliError(`${context}: ${detail} (${code})`, EXIT.PEER, { cause: err });
    case 'EADDRINUSE':
      return new CliError(`${context}: address already in use: ${detail}`, EXIT.LOCAL_ADDRESS, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new CliError(`${context}: permission denied: ${detail}`, EXIT.LOCAL_ADDRESS, { cause: err });
    case 'EADDRNOTAVAIL':
      return new CliError(`${context}: address not available on this host: ${detail}`, EXIT.LOCAL_ADDRESS, { cause: err });
    default:
      return new CliError(`${context}: ${detail}${code ? ` (${code})` : ''}`, EXIT.FAILURE, { cause: err });
  }
}
