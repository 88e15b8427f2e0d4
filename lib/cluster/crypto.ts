/**
 * The cluster's keys and its sealed-box format.
 *
 * Every key is derived from the server secret with HKDF-SHA256 and a label per use, so nodes that share the
 * secret share the keys and nothing else has to be distributed:
 * - `bus`: seals bus messages (authenticity and confidentiality: pair keys travel inside them);
 * - `store`: seals what the cluster keeps in Redis (node records, open-server id tokens);
 * - `transit <peerId>`: wraps pair keys for a peer on another node (see {@link transitKey}).
 *
 * Sealed box: `magic(4) | iv(12) | AES-256-GCM ciphertext | tag(16)`, with the magic and a caller-chosen context
 * (the Redis key or channel it belongs to) as associated data, so a sealed value moved to another key or channel
 * no longer opens. A node with another secret, a foreign publisher or a corrupted value all fail {@link open}.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

import { invalidArgType, invalidArgValue } from '../errors.js';

const SALT = Buffer.from('tcp-punch/1 cluster');
const MAGIC = Buffer.from('TPC1');
const IV_LEN = 12;
const TAG_LEN = 16;

/** Smallest sealed box (an empty plaintext). */
export const SEAL_OVERHEAD = MAGIC.length + IV_LEN + TAG_LEN;

/** The keys of one cluster, all derived from the server secret. */
export interface ClusterKeys {
  readonly bus: Buffer;
  readonly store: Buffer;
  /** The secret kept for deriving per-peer transit keys. */
  readonly root: Buffer;
}

/** Checks the cluster secret (at least 16 bytes, like the server secret) and derives the cluster's keys. */
export function deriveClusterKeys(secret: unknown): ClusterKeys {
  if (typeof secret !== 'string' && !(secret instanceof Uint8Array))
    throw invalidArgType('options.secret', 'a string or Uint8Array (the server secret)', secret);
  const root = Buffer.from(secret as Uint8Array);
  if (root.length < 16) throw invalidArgValue('options.secret', 'must be at least 16 bytes', '<secret>');
  return { bus: derive(root, 'bus'), store: derive(root, 'store'), root };
}

/**
 * The key a coordinator on another node wraps a pair key with for a remote peer (the remote proxy's
 * `sessionKey`): the owning node unwraps it with the same key and wraps it again with the peer's real session key,
 * which never leaves that node. The wrapped pair key travels only inside sealed bus messages.
 */
export function transitKey(keys: ClusterKeys, peerId: string): Buffer {
  return derive(keys.root, `transit ${peerId}`);
}

function derive(root: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', root, SALT, `tcp-punch/1 ${label}`, 32));
}

/** Seals `plain` under `key`, bound to `context`. */
export function seal(key: Buffer, context: string, plain: Uint8Array): Buffer {
  const iv = randomBytes(IV_LEN);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.concat([MAGIC, Buffer.from(context)]));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([MAGIC, iv, body, cipher.getAuthTag()]);
}

/** Opens a sealed box; undefined when it is not one, was sealed with another key, or for another context. */
export function open(key: Buffer, context: string, box: Uint8Array): Buffer | undefined {
  if (box.length < SEAL_OVERHEAD || !MAGIC.equals(box.subarray(0, MAGIC.length))) return undefined;
  const iv = box.subarray(MAGIC.length, MAGIC.length + IV_LEN);
  const tag = box.subarray(box.length - TAG_LEN);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.concat([MAGIC, Buffer.from(context)]));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(box.subarray(MAGIC.length + IV_LEN, box.length - TAG_LEN)), decipher.final()]);
  } catch {
    return undefined;
  }
}
