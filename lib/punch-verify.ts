/**
 * A punch that proves who answered: every connection from the expected host (through connect() or accept()) is a
 * candidate handed to the caller's `verify`; the first whose verify resolves is the result. A candidate from
 * another port of the peer's address that fails is closed and the punch goes on listening and retrying, so someone
 * else on that address (a carrier NAT shares one address among many customers) who connects first cannot end the
 * attempt. A candidate from a target's exact endpoint that fails ends the punch with the verify's error: only the
 * peer holds that mapping, so the peer itself failed.
 * @internal
 */
import { BlockList, type Socket } from 'node:net';
import { type Endpoint, familyOf, formatEndpoint } from './endpoint.js';
import { TcpPunchError } from './errors.js';
import type { NativePunchOptions } from './native.js';
import { type NativeConnection, runNative } from './native-op.js';

/** Checks a candidate connection; resolves when it is the peer, rejects otherwise. See `PunchOptions.verify`. */
export type Verify = (socket: Socket, signal: AbortSignal) => Promise<void>;

/**
 * Candidates verified at once. Every one comes from the peer's own address, so more than a few means a crowd
 * behind that address; further ones are closed at once (and counted) until a slot frees up.
 */
const MAX_VERIFYING = 16;

/**
 * Runs the native punch in candidate mode. Resolves the first verified connection; rejects with the punch's own
 * error (`ABORT_ERR`, a bind error...), or at the deadline with `ETIMEDOUT`, or `ERR_AUTH_FAILED` when candidates
 * came and every one failed verification (`cause`: the last verify error; `rejected`: how many).
 */
export function punchVerified(
  options: NativePunchOptions,
  signal: AbortSignal | undefined,
  allowHalfOpen: boolean,
  verify: Verify,
): Promise<NativeConnection> {
  const t0 = performance.now();
  const stop = new AbortController();
  const verifying = new Map<Socket, AbortController>();
  let settled = false;
  let rejected = 0;
  let turnedAway = 0;
  let lastFailure: unknown;
  const from = new Set<string>();
  const isTarget = exactMatcher(options.targets);

  const closeAll = (reason: unknown): void => {
    for (const [socket, ac] of verifying) {
      ac.abort(reason);
      socket.resetAndDestroy();
    }
    verifying.clear();
  };

  return new Promise((resolve, reject) => {
    const onCandidate = (c: NativeConnection): void => {
      if (settled || verifying.size >= MAX_VERIFYING) {
        if (!settled) turnedAway++;
        c.socket.resetAndDestroy();
        return;
      }
      const ac = new AbortController();
      verifying.set(c.socket, ac);
      // Until verify is done nobody else listens: a reset from a stranger must not become an uncaught error.
      const swallow = (): void => undefined;
      c.socket.on('error', swallow);
      Promise.resolve()
        .then(() => verify(c.socket, ac.signal))
        .then(
          () => {
            verifying.delete(c.socket);
            if (settled) return void c.socket.destroy();
            settled = true;
            c.socket.off('error', swallow);
            closeAll(new TcpPunchError('ABORT_ERR', 'another candidate was verified first'));
            stop.abort();
            resolve({ ...c, elapsedMs: performance.now() - t0 });
          },
          (err: unknown) => {
            verifying.delete(c.socket);
            // A reset, not a FIN: no TIME_WAIT left behind on the port, and a stranger learns nothing more.
            c.socket.resetAndDestroy();
            if (settled) return;
            if (isTarget(c.remote)) {
              settled = true;
              closeAll(err);
              stop.abort();
              reject(err);
              return;
            }
            rejected++;
            lastFailure = err;
            from.add(formatEndpoint(c.remote));
          },
        );
    };

    runNative(options, { signal: signal ? AbortSignal.any([signal, stop.signal]) : stop.signal, allowHalfOpen, onCandidate }).then(
      // A candidate punch never ends with a connection of its own; should it, the connection is not verified.
      (c) => {
        c.socket.destroy();
        if (!settled) reject(new TcpPunchError('ERR_NATIVE', 'the punch ended without a verified candidate'));
        settled = true;
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        closeAll(err);
        reject(rejected > 0 ? failedVerification(err, rejected, turnedAway, from, lastFailure) : err);
      },
    );
  });
}

/** Whether an endpoint is one of `targets` exactly (addresses compared in canonical form). */
function exactMatcher(targets: readonly Endpoint[]): (e: Endpoint) => boolean {
  const lists = targets.map((t) => {
    const list = new BlockList();
    list.addAddress(t.host, familyOf(t.host) === 6 ? 'ipv6' : 'ipv4');
    return { list, port: t.port };
  });
  return (e) => {
    const family = familyOf(e.host) === 6 ? 'ipv6' : 'ipv4';
    return lists.some(({ list, port }) => port === e.port && list.check(e.host, family));
  };
}

/** The deadline's error, saying that connections came but none proved to be the peer. */
function failedVerification(err: unknown, rejected: number, turnedAway: number, from: Set<string>, last: unknown): unknown {
  const e = err as { code?: unknown; attempts?: unknown; lastErrors?: unknown };
  if (e.code !== 'ETIMEDOUT') return err;
  const why = last instanceof Error ? last.message : String(last);
  const extra = turnedAway > 0 ? `, ${turnedAway} more turned away unverified` : '';
  return new TcpPunchError(
    'ERR_AUTH_FAILED',
    `punch timed out: ${rejected} connection(s) from ${listed(from)} failed verification${extra} (last: ${why})`,
    { cause: last, attempts: e.attempts, lastErrors: e.lastErrors, rejected, turnedAway },
  );
}

/** At most a few endpoints, for a message. */
function listed(endpoints: Set<string>): string {
  const all = [...endpoints];
  return all.length > 4 ? `${all.slice(0, 4).join(', ')} and ${all.length - 4} more` : all.join(', ');
}
