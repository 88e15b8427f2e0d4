/**
 * Relay tokens: signature, expiry, one-time use, bounded memory, and that junk never verifies.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { RelayTokens, type RelayTokenClaims } from '../lib/relay/tokens.js';

const SECRET = 'relay-secret-for-tests-0123456789';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('RelayTokens', () => {
  it('issues a pair whose claims name both sides and peers', () => {
    const tokens = new RelayTokens({ secret: SECRET });
    const pair = tokens.issue({ a: 'alice', b: 'bob' });
    const a = tokens.verify(pair.a);
    const b = tokens.verify(pair.b);
    expect(a).toMatchObject({ sid: pair.sessionId, side: 'a', peer: 'alice', other: 'bob', exp: pair.expiresAt });
    expect(b).toMatchObject({ sid: pair.sessionId, side: 'b', peer: 'bob', other: 'alice', exp: pair.expiresAt });
    expect(a.jti).not.toBe(b.jti);
    expect(tokens.issue({ a: 'alice', b: 'bob' }).sessionId).not.toBe(pair.sessionId);
  });

  it('rejects tokens signed with another secret, or altered in any part', () => {
    const tokens = new RelayTokens({ secret: SECRET });
    const other = new RelayTokens({ secret: 'another-secret-0123456789abcdef' });
    const token = tokens.issue({ a: 'alice', b: 'bob' }).a;
    const code = (t: unknown) => {
      try {
        tokens.verify(t);
        return 'ok';
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    expect(code(other.issue({ a: 'alice', b: 'bob' }).a)).toBe('ERR_RELAY_TOKEN_INVALID');
    const [prefix, payload, mac] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as RelayTokenClaims;
    const swapped = Buffer.from(JSON.stringify({ ...claims, peer: 'mallory' })).toString('base64url');
    expect(code(`${prefix}.${swapped}.${mac}`)).toBe('ERR_RELAY_TOKEN_INVALID');
    expect(code(`${prefix}.${payload}.${mac.slice(0, -2)}AA`)).toBe('ERR_RELAY_TOKEN_INVALID');
    expect(code(`tp2.${payload}.${mac}`)).toBe('ERR_RELAY_TOKEN_INVALID');
    for (const junk of ['', 'tp1..', 'tp1.a.b', 'x'.repeat(5000), 42, null, undefined, {}]) {
      expect(code(junk)).toBe('ERR_RELAY_TOKEN_INVALID');
    }
  });

  it('rejects well-signed payloads that are not valid claims', () => {
    const tokens = new RelayTokens({ secret: SECRET });
    const base = { sid: 's', side: 'a', peer: 'p', other: 'q', exp: Date.now() + 1000, jti: 'j' };
    for (const bad of [{ ...base, side: 'c' }, { ...base, exp: 'soon' }, { ...base, peer: 'has space' }, { ...base, jti: undefined }]) {
      const token = tokens.sign(bad as unknown as RelayTokenClaims);
      expect(() => tokens.verify(token)).toThrow(expect.objectContaining({ code: 'ERR_RELAY_TOKEN_INVALID' }));
    }
  });

  it('rejects expired tokens', () => {
    const c = clock();
    const tokens = new RelayTokens({ secret: SECRET, ttlMs: 1000, now: c.now });
    const pair = tokens.issue({ a: 'alice', b: 'bob' });
    expect(tokens.verify(pair.a).side).toBe('a');
    c.advance(1000);
    expect(() => tokens.verify(pair.a)).toThrow(expect.objectContaining({ code: 'ERR_RELAY_TOKEN_EXPIRED' }));
  });

  it('burns a token once and refuses its reuse', () => {
    const tokens = new RelayTokens({ secret: SECRET });
    const claims = tokens.verify(tokens.issue({ a: 'alice', b: 'bob' }).a);
    expect(tokens.isUsed(claims)).toBe(false);
    tokens.consume(claims);
    expect(tokens.isUsed(claims)).toBe(true);
    expect(() => tokens.consume(claims)).toThrow(expect.objectContaining({ code: 'ERR_RELAY_TOKEN_REUSED' }));
  });

  it('remembers at most maxRemembered used tokens, refusing rather than forgetting an unexpired one', () => {
    const c = clock();
    const tokens = new RelayTokens({ secret: SECRET, ttlMs: 1000, maxRemembered: 3, now: c.now });
    const claims = () => tokens.verify(tokens.issue({ a: 'alice', b: 'bob' }).a);
    for (let i = 0; i < 3; i++) tokens.consume(claims());
    const fourth = claims();
    expect(() => tokens.consume(fourth)).toThrow(expect.objectContaining({ code: 'ERR_RELAY_BUSY' }));
    c.advance(1000); // the first three expire, so they can be forgotten
    const fifth = claims();
    tokens.consume(fifth);
    expect(tokens.remembered).toBe(1);
  });

  it('never verifies random strings, and fails only with its own code', () => {
    const tokens = new RelayTokens({ secret: SECRET });
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map((s) => `tp1.${s}.${s}`)), (s) => {
        try {
          tokens.verify(s);
          return false;
        } catch (err) {
          return (err as { code?: string }).code === 'ERR_RELAY_TOKEN_INVALID';
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('validates its options', () => {
    expect(() => new RelayTokens({ secret: 'short' })).toThrow(RangeError);
    expect(() => new RelayTokens({ secret: SECRET, ttlMs: 0 })).toThrow(RangeError);
    const tokens = new RelayTokens({ secret: SECRET });
    expect(() => tokens.issue({ a: 'has space', b: 'bob' })).toThrow(RangeError);
  });
});
