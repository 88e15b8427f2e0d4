/**
 * A peer's list of rendezvous servers (the nodes of a cluster): `server: 'a:7770'` or `['a:7770', 'b:7770']`, the
 * CLI's `--server a:7770,b:7770`.
 *
 * A peer registers with the first server that answers and, when it loses that one, moves on to the next, wrapping
 * around. {@link ServerList} only keeps the position; the peer's reconnect loop asks it where to connect
 * ({@link ServerList.current}), reports a failed attempt or a lost connection ({@link ServerList.failed}) and a
 * registration ({@link ServerList.succeeded}). After a whole round of failures the loop waits its reconnect
 * backoff before the next round (`failed()` says when a round ends), so a cluster that is entirely down is not
 * hammered, while a single lost node costs no wait at all.
 */
import type { Endpoint } from '../endpoint.js';
import { formatEndpoint } from '../endpoint.js';
import { invalidArgType, invalidArgValue } from '../errors.js';
import { parseServer } from './options.js';

/** Most servers in one list. */
export const MAX_SERVERS = 32;

/**
 * Validates `options.server`: one `host:port` / `[v6]:port` / `{ host, port }`, or a non-empty array of them
 * without duplicates. Errors name the element (`options.server[1]`).
 */
export function parseServerList(server: unknown): Endpoint[] {
  if (!Array.isArray(server)) return [parseServer(server)];
  if (server.length === 0) throw invalidArgValue('options.server', 'must list at least one server', server);
  if (server.length > MAX_SERVERS) throw invalidArgValue('options.server', `must list at most ${MAX_SERVERS} servers`, server);
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  server.forEach((s: unknown, i) => {
    let ep: Endpoint;
    try {
      ep = parseServer(s);
    } catch (err) {
      throw renamed(err, `options.server[${i}]`);
    }
    const key = formatEndpoint(ep).toLowerCase();
    if (seen.has(key)) throw invalidArgValue(`options.server[${i}]`, `repeats ${formatEndpoint(ep)}`, s);
    seen.add(key);
    out.push(ep);
  });
  return out;
}

/** Splits the CLI's `--server a:7770,b:7770` into the list {@link parseServerList} takes. */
export function splitServerFlag(flag: unknown): string[] {
  if (typeof flag !== 'string') throw invalidArgType('--server', 'a "host:port[,host:port...]" string', flag);
  return flag.split(',').map((s) => s.trim());
}

/** Where a peer registers, with failover along the list. */
export class ServerList {
  private index = 0;
  /** Servers tried since the last registration. */
  private failures = 0;

  constructor(readonly servers: readonly Endpoint[]) {
    if (servers.length === 0) throw invalidArgValue('servers', 'must not be empty', servers);
  }

  /** The server to connect to now. */
  current(): Endpoint {
    return this.servers[this.index]!;
  }

  /**
   * The current server failed (could not connect, or the registered connection was lost): move to the next.
   * @returns `roundFailed` when every server has failed since the last registration (wait the backoff now).
   */
  failed(): { next: Endpoint; roundFailed: boolean } {
    this.failures++;
    this.index = (this.index + 1) % this.servers.length;
    const roundFailed = this.failures >= this.servers.length;
    if (roundFailed) this.failures = 0;
    return { next: this.current(), roundFailed };
  }

  /** Registered with the current server: it stays current until it fails. */
  succeeded(): void {
    this.failures = 0;
  }
}

function renamed(err: unknown, name: string): unknown {
  if (!(err instanceof Error)) return err;
  err.message = err.message.replace(/"options\.server(\.\w+)?"/, (_m, field: string | undefined) => `"${name}${field ?? ''}"`);
  return err;
}
