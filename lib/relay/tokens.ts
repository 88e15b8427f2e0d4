/**
 * Relay tokens: one-time, expiring, signed permissions to join one side of one relay session.
 *
 * The rendezvous server issues a pair for two peers it has decided to relay (one token for side `a`, one for
 * side `b`, sharing a fresh session id); the relay checks the signature and the expiry, pairs exactly the two
 * holders, and burns each token when it is accepted. A token names the peer that holds it and the peer it may be
 * paired with, so even a leaked token can only ever connect its holder's slot to that one other peer: the relay
 * never learns a destination address from a client and cannot be used as an open proxy.
 *
 * Format: `tp1.<payload>.<mac>`, both base64url; payload is the JSON of {@link RelayTokenClaims} and
 * mac = HMAC-SHA256(secret, "tcp-punch/1 relay-token" 0x00 payload). The relay parses the payload only after the
 * MAC has been checked in constant time.
 *
 * Used token ids are remembered until their expiry, in at most `maxRemembered` entries; when that many unexpired
 * tokens are in use, new joins are refused (`ERR_RELAY_BUSY`) rather than forgetting one, which could let it be
 * replayed.
 *
 * Error codes (TcpPunchError): `ERR_RELAY_TOKEN_INVALID` (malformed or bad signature), `ERR_RELAY_TOKEN_EXPIRED`,
 * `ERR_RELAY_TOKEN_REUSED`, `ERR_RELAY_BUSY`.
 */
import { type KeyObject, createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';

import { validateInteger } from '../endpoint.js';
import { TcpPunchError, invalidArgType, invalidArgValue } from '../errors.js';
import { random } from '../protocol/crypto.js';

/** What a token grants. */
export interface RelayTokenClaims {
  /** Relay session id, shared by the two tokens of a pair. */
  sid: string;
  /** The slot this token fills. */
  side: 'a' | 'b';
  /** The peer id of the holder. */
  peer: string;
  /** The peer id of the holder of the other side. */
  other: string;
  /** Expiry, ms since the epoch. */
  exp: number;
  /** Unique token id. */
  jti: string;
}

/** The two tokens of one relay session, as {@link RelayTokens.issue} returns them. */
export interface RelayTokenPair {
  sessionId: string;
  /** Expiry of both tokens, ms since the epoch. */
  expiresAt: number;
  /** For the peer named `a` in the request. */
  a: string;
  /** For the peer named `b`. */
  b: string;
}

/** Options of {@link RelayTokens}. */
export interface RelayTokensOptions {
  /** Server secret, at least 16 bytes (32 random bytes recommended); shared with a relay in another process. */
  secret: Uint8Array | string;
  /** Lifetime of issued tokens in ms; default 60000. It also bounds how long a used token id is remembered. */
  ttlMs?: number;
  /** Most used token ids remembered at once; default 100000. */
  maxRemembered?: number;
  /** Clock, for tests; default Date.now. */
  now?: () => number;
}

const PREFIX = 'tp1';
const LABEL = 'tcp-punch/1 relay-token\0';
/** Longest token accepted; issued ones are about 300 characters. */
export const MAX_TOKEN_LENGTH = 1024;
const ID_PATTERN = /^[\x21-\x7e]{1,64}$/;
const B64URL = /^[A-Za-z0-9_-]+$/;

/** Issues and checks relay tokens with one secret. */
export class RelayTokens {
  readonly ttlMs: number;
  readonly maxRemembered: number;
  /** The secret imported once: an HMAC keyed with a KeyObject skips the key's copy and checks (7 µs, not 12). */
  private readonly key: KeyObject;
  private readonly now: () => number;
  /** Used token id -> expiry, in the order they were used. */
  private readonly used = new Map<string, number>();

  constructor(options: RelayTokensOptions) {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'an object', options);
    const { secret, ttlMs = 60_000, maxRemembered = 100_000, now = Date.now } = options;
    if (typeof secret !== 'string' && !(secret instanceof Uint8Array))
      throw invalidArgType('options.secret', 'a string or Uint8Array', secret);
    const bytes = Buffer.from(secret as Uint8Array);
    if (bytes.length < 16) throw invalidArgValue('options.secret', 'must be at least 16 bytes', '<secret>');
    this.key = createSecretKey(bytes);
    validateInteger(ttlMs, 'options.ttlMs', 1, 86_400_000);
    validateInteger(maxRemembered, 'options.maxRemembered', 1, 10_000_000);
    if (typeof now !== 'function') throw invalidArgType('options.now', 'a function', now);
    this.ttlMs = ttlMs;
    this.maxRemembered = maxRemembered;
    this.now = now;
  }

  /** Number of used token ids remembered. */
  get remembered(): number {
    return this.used.size;
  }

  /** Issues the two tokens of a new relay session between peers `a` and `b`. */
  issue(pair: { a: string; b: string; ttlMs?: number; sessionId?: string }): RelayTokenPair {
    if (typeof pair !== 'object' || pair === null) throw invalidArgType('pair', 'an object', pair);
    const { a, b, ttlMs = this.ttlMs } = pair;
    for (const [name, id] of [['pair.a', a], ['pair.b', b]] as const) {
      if (typeof id !== 'string' || !ID_PATTERN.test(id)) throw invalidArgValue(name, 'must be a peer id', id);
    }
    validateInteger(ttlMs, 'pair.ttlMs', 1, 86_400_000);
    // The rendezvous server names the session after its coordination, so peers can match grants and notices to it.
    if (pair.sessionId !== undefined && (typeof pair.sessionId !== 'string' || !ID_PATTERN.test(pair.sessionId)))
      throw invalidArgValue('pair.sessionId', 'must be 1..64 printable characters', pair.sessionId);
    // One pooled draw for the three ids: a CSPRNG call costs about 6 µs, a third of an issue when made per id.
    const ids = random(40);
    const sid = pair.sessionId ?? ids.toString('base64url', 0, 16);
    const exp = this.now() + ttlMs;
    return {
      sessionId: sid,
      expiresAt: exp,
      a: this.sign({ sid, side: 'a', peer: a, other: b, exp, jti: ids.toString('base64url', 16, 28) }),
      b: this.sign({ sid, side: 'b', peer: b, other: a, exp, jti: ids.toString('base64url', 28, 40) }),
    };
  }

  /** Signs arbitrary claims (the building block of {@link issue}; tests use it to forge odd pairs). */
  sign(claims: RelayTokenClaims): string {
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${PREFIX}.${payload}.${this.mac(payload).toString('base64url')}`;
  }

  /**
   * Checks a token's signature and expiry and returns its claims. Does not burn it (see {@link consume}).
   * @throws TcpPunchError `ERR_RELAY_TOKEN_INVALID` or `ERR_RELAY_TOKEN_EXPIRED`.
   */
  verify(token: unknown): RelayTokenClaims {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) throw invalid('not a relay token');
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== PREFIX || !B64URL.test(parts[1]!) || !B64URL.test(parts[2]!))
      throw invalid('not a relay token');
    const mac = Buffer.from(parts[2]!, 'base64url');
    const expected = this.mac(parts[1]!);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) throw invalid('bad signature');
    const claims = parseClaims(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    if (claims.exp <= this.now()) {
      throw new TcpPunchError('ERR_RELAY_TOKEN_EXPIRED', 'the relay token has expired', { sessionId: claims.sid });
    }
    return claims;
  }

  /** True when the token id has been used and has not yet expired. */
  isUsed(claims: RelayTokenClaims): boolean {
    return this.used.has(claims.jti);
  }

  /**
   * Burns a verified token.
   * @throws TcpPunchError `ERR_RELAY_TOKEN_REUSED`, or `ERR_RELAY_BUSY` when the memory of used tokens is full.
   */
  consume(claims: RelayTokenClaims): void {
    if (this.used.has(claims.jti)) {
      throw new TcpPunchError('ERR_RELAY_TOKEN_REUSED', 'the relay token has already been used', {
        sessionId: claims.sid,
      });
    }
    // Tokens mostly expire in the order they were used: drop the expired head cheaply, everything when full.
    const now = this.now();
    for (const [jti, exp] of this.used) {
      if (exp > now) break;
      this.used.delete(jti);
    }
    if (this.used.size >= this.maxRemembered) this.prune();
    if (this.used.size >= this.maxRemembered) {
      throw new TcpPunchError('ERR_RELAY_BUSY', 'too many relay tokens in use; try again later');
    }
    this.used.set(claims.jti, claims.exp);
  }

  /** Forgets used token ids that have expired (they can no longer verify). */
  prune(): void {
    const now = this.now();
    for (const [jti, exp] of this.used) if (exp <= now) this.used.delete(jti);
  }

  private mac(payload: string): Buffer {
    // One update: LABEL and the payload are ASCII, so their UTF-8 concatenation is the bytes signed.
    return createHmac('sha256', this.key).update(LABEL + payload).digest();
  }
}

function invalid(why: string): TcpPunchError {
  return new TcpPunchError('ERR_RELAY_TOKEN_INVALID', `invalid relay token: ${why}`);
}

/** Strict parse of a signed payload: a signature by our own secret over junk must still not crash the relay. */
function parseClaims(json: string): RelayTokenClaims {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw invalid('malformed payload');
  }
  const c = v as Record<string, unknown>;
  const ok =
    typeof v === 'object' &&
    v !== null &&
    typeof c.sid === 'string' &&
    ID_PATTERN.test(c.sid) &&
    (c.side === 'a' || c.side === 'b') &&
    typeof c.peer === 'string' &&
    ID_PATTERN.test(c.peer) &&
    typeof c.other === 'string' &&
    ID_PATTERN.test(c.other) &&
    typeof c.exp === 'number' &&
    Number.isSafeInteger(c.exp) &&
    typeof c.jti === 'string' &&
    ID_PATTERN.test(c.jti);
  if (!ok) throw invalid('malformed claims');
  return { sid: c.sid as string, side: c.side as 'a' | 'b', peer: c.peer as string, other: c.other as string, exp: c.exp as number, jti: c.jti as string };
}
