/**
 * Key derivation and MACs of the protocol; all HMAC-SHA256 with a domain-separating label per use.
 *
 * - id key: in secret mode `HMAC(secret, "tcp-punch/1 id-key" 0x00 id)`; in open mode the 32-byte token the server
 *   issued to the id's first registrant. An operator can hand a peer its id key instead of the shared secret.
 * - client proof / server proof: `HMAC(idKey, label 0x00 serverNonce clientNonce id)`, binding both nonces, so a
 *   recorded proof is useless on another connection.
 * - session key: `HMAC(idKey, "tcp-punch/1 session" 0x00 serverNonce clientNonce)`; wraps each pair key.
 * - pair key: 32 random bytes per coordination, sent to each side XOR `HMAC(sessionKey, "tcp-punch/1 pair-key" 0x00 coordId)`.
 * - direct MAC: `HMAC(pairKey, "tcp-punch/1 direct" 0x00 coordId attempt role attemptNonce)`, role-bound so a
 *   side's own MAC reflected back is rejected.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import type { ROLES } from './messages.js';

type Role = (typeof ROLES)[number];

/** Each use's label prefix as bytes, made once: not a string built and converted to UTF-8 on every MAC. */
const LABELS = new Map<string, Buffer>();

function labelBytes(label: string): Buffer {
  let bytes = LABELS.get(label);
  if (!bytes) LABELS.set(label, (bytes = Buffer.from(`tcp-punch/1 ${label}\0`, 'utf8')));
  return bytes;
}

function hmac(key: Uint8Array | string, label: string, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  h.update(labelBytes(label));
  for (const p of parts) h.update(p);
  return h.digest();
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Derives a peer id's key from the server's shared secret. */
export function deriveIdKey(secret: Uint8Array | string, id: string): Buffer {
  return hmac(secret, 'id-key', utf8(id));
}

/** The proof a client sends in `auth`. */
export function clientProof(idKey: Uint8Array, serverNonce: Uint8Array, clientNonce: Uint8Array, id: string): Buffer {
  return hmac(idKey, 'client', serverNonce, clientNonce, utf8(id));
}

/** The proof the server sends in `welcome`, showing it knows the id key too. */
export function serverProof(idKey: Uint8Array, serverNonce: Uint8Array, clientNonce: Uint8Array, id: string): Buffer {
  return hmac(idKey, 'server', serverNonce, clientNonce, utf8(id));
}

/** The per-connection session key. */
export function sessionKey(idKey: Uint8Array, serverNonce: Uint8Array, clientNonce: Uint8Array): Buffer {
  return hmac(idKey, 'session', serverNonce, clientNonce);
}

/** The proof of a `register-family` message: the control session's key over a single-use nonce and the id. */
export function familyProof(session: Uint8Array, nonce: Uint8Array, id: string): Buffer {
  return hmac(session, 'family', nonce, utf8(id));
}

/** Wraps (or unwraps: the operation is its own inverse) a 32-byte pair key for one session. */
export function wrapPairKey(session: Uint8Array, coordId: Uint8Array, pairKey: Uint8Array): Buffer {
  const pad = hmac(session, 'pair-key', coordId);
  const out = Buffer.allocUnsafe(32);
  for (let i = 0; i < 32; i++) out[i] = pairKey[i]! ^ pad[i]!;
  return out;
}

/** The MAC each side sends on the punched socket. */
export function directMac(
  pairKey: Uint8Array,
  coordId: Uint8Array,
  attempt: number,
  role: Role,
  attemptNonce: Uint8Array,
): Buffer {
  return hmac(pairKey, 'direct', coordId, Uint8Array.of(attempt & 0xff, role === 'initiator' ? 1 : 2), attemptNonce);
}

/** Constant-time equality of two byte strings (false when the lengths differ). */
export function safeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Bytes drawn from the system's CSPRNG at a time: one call per few dozen coordinations instead of five each. */
const POOL_SIZE = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** Cryptographically random bytes (a copy the caller owns; small draws come from a pooled CSPRNG read). */
export function random(n: number): Buffer {
  if (n > POOL_SIZE / 8) return randomBytes(n);
  if (poolOffset + n > pool.length) {
    pool = randomBytes(POOL_SIZE);
    poolOffset = 0;
  }
  const out = Buffer.from(pool.subarray(poolOffset, poolOffset + n));
  pool.fill(0, poolOffset, poolOffset + n); // drawn bytes do not stay behind in the pool
  poolOffset += n;
  return out;
}
