/**
 * Flags of the tunnel's access and encryption (expose, connect): the service key, --no-encrypt, --allow,
 * --public, --wait-peer.
 */
import { readFileSync } from 'node:fs';
import { PEER_ID_PATTERN } from '../protocol/messages.js';
import { parseDuration } from './args.js';
import { CliError, EXIT } from './errors.js';
import type { Flags } from './flags.js';

export const KEY_OPTIONS = {
  key: {
    type: 'string',
    arg: 'K',
    help: 'the service key (or set TCP_PUNCH_SERVICE_KEY): both sides prove they hold it before a\nbyte reaches the service, and the tunnel is encrypted end to end (TLS 1.3)',
  },
  'key-file': { type: 'string', arg: 'F', path: true, help: 'read the service key from file F' },
  'no-encrypt': {
    type: 'boolean',
    help: 'with a key: prove the key but carry the bytes as they are (zero-copy; for protocols that\nencrypt themselves, e.g. ssh or TLS); both sides must agree',
  },
} as const satisfies Flags;

export const EXPOSE_ACCESS_OPTIONS = {
  allow: { type: 'string', arg: 'ID[,ID...]', help: 'only these peer ids (as the server authenticated them) may connect' },
  public: { type: 'boolean', help: 'the service is meant for everyone: needed on an open server without --key or --allow' },
} as const satisfies Flags;

/** Default of --wait-peer, ms. */
export const DEFAULT_WAIT_PEER_MS = 5000;

export const WAIT_PEER_OPTIONS = {
  'wait-peer': {
    type: 'string',
    arg: 'T',
    help: `how long a local client waits while the server or the peer is away, e.g. 10s; 0 = not\nat all (default ${DEFAULT_WAIT_PEER_MS / 1000}s)`,
  },
} as const satisfies Flags;

/** The service key from --key, --key-file or TCP_PUNCH_SERVICE_KEY; at most one of the flags. */
export function readServiceKey(
  values: Record<string, unknown>,
  where: (key: string) => string = (k) => `--${k}`,
): string | undefined {
  const given = values.key as string | undefined;
  const file = values['key-file'] as string | undefined;
  if (given !== undefined && file !== undefined) {
    throw new CliError(`give either ${where('key')} or ${where('key-file')}, not both`, EXIT.USAGE);
  }
  let key = given;
  if (file !== undefined) {
    try {
      key = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new CliError(`${where('key-file')}: cannot read ${file}: ${(err as Error).message}`, EXIT.USAGE);
    }
    if (key === '') throw new CliError(`${where('key-file')}: ${file} is empty`, EXIT.USAGE);
  }
  key ??= process.env.TCP_PUNCH_SERVICE_KEY || undefined;
  if (key === '') throw new CliError(`${where('key')}: the key is empty`, EXIT.USAGE);
  return key;
}

/** --allow as a list of peer ids; undefined when absent. */
export function parseAllow(value: string | undefined, where = '--allow'): string[] | undefined {
  if (value === undefined) return undefined;
  const ids = value.split(',').map((s) => s.trim());
  for (const id of ids) {
    if (!PEER_ID_PATTERN.test(id)) throw new CliError(`${where}: "${id}" is not a peer id (1-64 printable characters, no spaces)`, EXIT.USAGE);
  }
  return ids;
}

/** --wait-peer in ms (0 allowed). */
export function parseWaitPeer(value: string | undefined, where = '--wait-peer'): number {
  if (value === '0') return 0;
  return parseDuration(value, where, { min: 1, max: 3_600_000 }) ?? DEFAULT_WAIT_PEER_MS;
}
