/**
 * Flags of the tunnel's access and encryption (expose, connect): the service key, --no-encrypt, --allow,
 * --public, --wait-peer.
 */
import { readFileSync } from 'node:fs';
import { PEER_ID_PATTERN } from '../protocol/messages.js';
import { parseDuration } from './args.js';
import { CliError, EXIT } from './errors.js';

export const KEY_OPTIONS = {
  key: { type: 'string' },
  'key-file': { type: 'string' },
  'no-encrypt': { type: 'boolean' },
} as const;

export const KEY_HELP = `  --key K            the service key (or set TCP_PUNCH_SERVICE_KEY): both sides prove they hold it before a
                     byte reaches the service, and the tunnel is encrypted end to end (TLS 1.3)
  --key-file F       read the service key from file F
  --no-encrypt       with a key: prove the key but carry the bytes as they are (zero-copy; for protocols that
                     encrypt themselves, e.g. ssh or TLS); both sides must agree`;

export const EXPOSE_ACCESS_OPTIONS = {
  allow: { type: 'string' },
  public: { type: 'boolean' },
} as const;

export const EXPOSE_ACCESS_HELP = `  --allow ID[,ID...] only these peer ids (as the server authenticated them) may connect
  --public           the service is meant for everyone: needed on an open server without --key or --allow`;

export const WAIT_PEER_OPTIONS = { 'wait-peer': { type: 'string' } } as const;

export const WAIT_PEER_HELP = `  --wait-peer T      how long a local client waits while the server or the peer is away, e.g. 10s; 0 = not
                     at all (default 5s)`;

/** Default of --wait-peer, ms. */
export const DEFAULT_WAIT_PEER_MS = 5000;

/** The service key from --key, --key-file or TCP_PUNCH_SERVICE_KEY; at most one of the flags. */
export function readServiceKey(values: { key?: string; 'key-file'?: string }): string | undefined {
  if (values.key !== undefined && values['key-file'] !== undefined) {
    throw new CliError('give either --key or --key-file, not both', EXIT.USAGE);
  }
  let key = values.key;
  if (values['key-file'] !== undefined) {
    try {
      key = readFileSync(values['key-file'], 'utf8').trim();
    } catch (err) {
      throw new CliError(`--key-file: cannot read ${values['key-file']}: ${(err as Error).message}`, EXIT.USAGE);
    }
    if (key === '') throw new CliError(`--key-file: ${values['key-file']} is empty`, EXIT.USAGE);
  }
  key ??= process.env.TCP_PUNCH_SERVICE_KEY || undefined;
  if (key === '') throw new CliError('--key: the key is empty', EXIT.USAGE);
  return key;
}

/** --allow as a list of peer ids; undefined when absent. */
export function parseAllow(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const ids = value.split(',').map((s) => s.trim());
  for (const id of ids) {
    if (!PEER_ID_PATTERN.test(id)) throw new CliError(`--allow: "${id}" is not a peer id (1-64 printable characters, no spaces)`, EXIT.USAGE);
  }
  return ids;
}

/** --wait-peer in ms (0 allowed). */
export function parseWaitPeer(value: string | undefined): number {
  if (value === '0') return 0;
  return parseDuration(value, '--wait-peer', { min: 1, max: 3_600_000 }) ?? DEFAULT_WAIT_PEER_MS;
}
