/**
 * Fuzzing the relay's network-facing parsers: relay message bodies (decodeRelay), relay tokens (verify) with
 * structure-aware mutations of valid tokens and of signed claims, and whole join frames against a live
 * RelayService. Invariants: only the documented codes, no other exception, no hang, canonical re-encoding, a token
 * verifies only when it is exactly a signed valid claim set, no prototype pollution, and the relay's counters
 * return to zero.
 */
import { once } from 'node:events';
import { connect } from 'node:net';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TcpPunchError } from '../../lib/errors.js';
import { encodeFrame, FrameDecoder } from '../../lib/protocol/frame.js';
import { decodeMessage } from '../../lib/protocol/messages.js';
import { decodeRelay, encodePairedFrames, encodeRelayBody, encodeRelayFrame } from '../../lib/relay/frames.js';
import { listenRelay, type RelayListener } from '../../lib/relay/relay-server.js';
import { RelayService } from '../../lib/relay/relay-service.js';
import { MAX_TOKEN_LENGTH, RelayTokens, type RelayTokenClaims } from '../../lib/relay/tokens.js';
import { record, scale } from '../reliability/summary.js';
import { RELAY_SCHEMAS, bodyOf, mutatedRelayArb, opsArb, mutate, relayStructured, type RelayBodyName } from './mutate.js';

const SECRET = 'fuzz-relay-secret-0123456789abcdef';
const stats: Record<string, unknown> = {};

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!(err instanceof TcpPunchError)) throw err;
    return err.code;
  }
}

describe('fuzz: relay bodies', () => {
  it("the fuzzer's copy of the relay schemas encodes exactly like lib/relay/frames.ts", () => {
    for (const name of Object.keys(RELAY_SCHEMAS) as RelayBodyName[]) {
      fc.assert(
        fc.property(relayStructured(name), (s) => {
          const body = bodyOf(s);
          const decoded = decodeRelay({ type: s.type, body });
          expect(decoded.name).toBe(name);
          const { name: _n, ...value } = decoded;
          expect(encodeRelayBody(name, value as never).equals(body)).toBe(true);
        }),
        { numRuns: 200 },
      );
    }
  });

  it("the relay's fast relay-paired encoder makes exactly the schema's frames, and refuses what it refuses", () => {
    const id = fc.oneof(fc.stringMatching(/^[\x21-\x7e]{1,64}$/), fc.string({ maxLength: 70 }));
    const count = fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.double(), fc.integer({ min: -5, max: -1 }));
    fc.assert(
      fc.property(id, id, id, count, count, (sid, peerA, peerB, maxBytes, maxDurationMs) => {
        const generic = (side: 'a' | 'b', peer: string): string =>
          codeOf(() => encodeRelayFrame('relay-paired', { sessionId: sid, side, peer, maxBytes, maxDurationMs }));
        const expected = generic('a', peerB) === 'ok' ? generic('b', peerA) : generic('a', peerB);
        let got: Buffer[] = [];
        expect(codeOf(() => (got = encodePairedFrames(sid, peerA, peerB, maxBytes, maxDurationMs)))).toBe(expected);
        if (expected !== 'ok') return;
        expect(got[0]!.equals(encodeRelayFrame('relay-paired', { sessionId: sid, side: 'a', peer: peerB, maxBytes, maxDurationMs }))).toBe(true);
        expect(got[1]!.equals(encodeRelayFrame('relay-paired', { sessionId: sid, side: 'b', peer: peerA, maxBytes, maxDurationMs }))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes mutated relay bodies canonically or fails with ERR_MALFORMED_FRAME only', () => {
    const codes: Record<string, number> = {};
    let runs = 0;
    fc.assert(
      fc.property(mutatedRelayArb(), fc.integer({ min: 0x40, max: 0x4f }), fc.boolean(), (m, otherType, confuse) => {
        runs++;
        const type = confuse ? otherType : m.type;
        const code = codeOf(() => {
          const d = decodeRelay({ type, body: m.body });
          const { name, ...value } = d;
          expect(encodeRelayBody(name, value as never).equals(m.body)).toBe(true);
        });
        expect(['ok', 'ERR_MALFORMED_FRAME']).toContain(code);
        codes[code] = (codes[code] ?? 0) + 1;
      }),
      { numRuns: scale(10_000, 200_000) },
    );
    stats.bodies = { runs, codes };
  });
});

/** The claims a token may carry: the rule verify() must implement, written independently. */
function validClaims(c: unknown): boolean {
  const id = (v: unknown): boolean => typeof v === 'string' && /^[\x21-\x7e]{1,64}$/.test(v);
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return false;
  const o = c as Record<string, unknown>;
  return id(o.sid) && (o.side === 'a' || o.side === 'b') && id(o.peer) && id(o.other) && typeof o.exp === 'number' && Number.isSafeInteger(o.exp) && id(o.jti);
}

const jsonValue = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(2 ** 53, -1, 0, 1e308, Number.MAX_SAFE_INTEGER),
  fc.string({ maxLength: 70 }),
  fc.constantFrom('a', 'b', 'c', '', 'has space', 'x'.repeat(65), '\u00e9'),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);

describe('fuzz: relay tokens', () => {
  const now = 1_000_000_000_000;
  const tokens = new RelayTokens({ secret: SECRET, now: () => now });
  const base = (): RelayTokenClaims => ({ sid: 'sess-1', side: 'a', peer: 'alice', other: 'bob', exp: now + 60_000, jti: 'jti-1' });

  it('verifies signed claims exactly when they are valid, never pollutes prototypes, codes only INVALID/EXPIRED', () => {
    const codes: Record<string, number> = {};
    let runs = 0;
    const keys = ['sid', 'side', 'peer', 'other', 'exp', 'jti', '__proto__', 'constructor', 'extra'];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...keys), jsonValue, fc.boolean()), { maxLength: 4 }), fc.integer({ min: -2, max: 2 }), (edits, expShift) => {
        runs++;
        const c: Record<string, unknown> = { ...base(), exp: now + expShift };
        for (const [k, v, remove] of edits) {
          if (remove) delete c[k];
          else Object.defineProperty(c, k, { value: v, enumerable: true, configurable: true, writable: true });
        }
        const json = JSON.stringify(c);
        // sign() takes claims; feed it the raw JSON by signing an object that stringifies to it.
        const token = tokens.sign(JSON.parse(json) as RelayTokenClaims);
        let got: RelayTokenClaims | undefined;
        const code = codeOf(() => (got = tokens.verify(token)));
        codes[code] = (codes[code] ?? 0) + 1;
        const parsed: unknown = JSON.parse(json);
        if (!validClaims(parsed)) expect(code).toBe('ERR_RELAY_TOKEN_INVALID');
        else if ((parsed as RelayTokenClaims).exp <= now) expect(code).toBe('ERR_RELAY_TOKEN_EXPIRED');
        else {
          expect(code).toBe('ok');
          expect(Object.keys(got!).sort()).toEqual(['exp', 'jti', 'other', 'peer', 'side', 'sid'].sort());
        }
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
        expect(Object.getPrototypeOf(got ?? {})).toBe(Object.prototype);
      }),
      { numRuns: scale(5000, 100_000) },
    );
    stats.signedClaims = { runs, codes };
  });

  it('never verifies a mutated token (prefix, payload or MAC bytes, separators, length), and fails only with INVALID', () => {
    const codes: Record<string, number> = {};
    let runs = 0;
    const valid = tokens.issue({ a: 'alice', b: 'bob' }).a;
    const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const mutation = fc.oneof(
      fc.tuple(fc.constant('replace'), fc.nat(), fc.constantFrom(...`${b64}.=+/ \u00e9\0`.split(''))),
      fc.tuple(fc.constant('delete'), fc.nat(), fc.constant('')),
      fc.tuple(fc.constant('insert'), fc.nat(), fc.constantFrom(...`${b64}.=`.split(''))),
      fc.tuple(fc.constant('truncate'), fc.nat(), fc.constant('')),
      fc.tuple(fc.constant('pad'), fc.nat(MAX_TOKEN_LENGTH), fc.constant('')),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        runs++;
        let t = valid;
        for (const [op, at, ch] of ms) {
          const i = at % (t.length + 1);
          if (op === 'replace') t = t.slice(0, i) + ch + t.slice(i + 1);
          else if (op === 'delete') t = t.slice(0, i) + t.slice(i + 1);
          else if (op === 'insert') t = t.slice(0, i) + ch + t.slice(i);
          else if (op === 'truncate') t = t.slice(0, i);
          else t = t + 'A'.repeat(at);
        }
        const code = codeOf(() => tokens.verify(t));
        const key = t === valid ? 'unchanged' : code;
        codes[key] = (codes[key] ?? 0) + 1;
        if (t === valid) return;
        // The MAC covers the payload text, so only the MAC's encoding is malleable (the unused low bits of its last
        // base64url character): a token that verifies must carry the same prefix, payload text and MAC bytes.
        if (code === 'ok') {
          const [p0, p1, p2] = t.split('.');
          const [v0, v1, v2] = valid.split('.');
          expect(t.split('.').length).toBe(3);
          expect([p0, p1]).toEqual([v0, v1]);
          expect(Buffer.from(p2!, 'base64url').equals(Buffer.from(v2!, 'base64url'))).toBe(true);
        } else {
          expect(code).toBe('ERR_RELAY_TOKEN_INVALID');
        }
      }),
      { numRuns: scale(5000, 100_000) },
    );
    stats.mutatedTokens = { runs, codes };
  });
});

describe('fuzz: relay joins against a live relay', () => {
  let service: RelayService;
  let listener: RelayListener;
  beforeAll(async () => {
    service = new RelayService({ secret: SECRET, limits: { joinTimeoutMs: 50 }, lingerMs: 200 });
    listener = await listenRelay(service, { host: '127.0.0.1', handshakeTimeoutMs: 200 });
  });
  afterAll(async () => {
    await listener.close();
  });

  const DOCUMENTED = new Set([
    'ERR_MALFORMED_FRAME', 'ERR_BAD_MAGIC', 'ERR_UNSUPPORTED_VERSION', 'ERR_FRAME_TOO_LARGE', 'ERR_UNKNOWN_TYPE',
    'ERR_UNEXPECTED_MESSAGE', 'ETIMEDOUT', 'ECONNRESET', 'ERR_RELAY_PROTOCOL', 'ERR_RELAY_TOKEN_INVALID',
    'ERR_RELAY_TOKEN_EXPIRED', 'ERR_RELAY_TOKEN_REUSED', 'ERR_RELAY_TOKEN_MISMATCH', 'ERR_RELAY_JOIN_TIMEOUT',
    'ERR_RELAY_SESSION_ENDED', 'ERR_RELAY_PEER_GONE', 'ERR_RELAY_LIMIT_SESSIONS', 'ERR_RELAY_LIMIT_PEER', 'ERR_RELAY_LIMIT_IP',
  ]);

  /** Sends `bytes` as a joiner would and resolves the code of the relay's answer ('paired' or 'closed' otherwise). */
  async function answer(bytes: Buffer): Promise<string> {
    const sock = connect({ host: '127.0.0.1', port: listener.address().port });
    sock.on('error', () => undefined);
    await once(sock, 'connect');
    sock.write(bytes);
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    const closed = await Promise.race([once(sock, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    sock.destroy();
    if (!closed) return 'hang';
    const d = new FrameDecoder();
    d.write(Buffer.concat(chunks));
    try {
      const f = d.read();
      if (!f) return 'closed';
      const m = decodeMessage(f);
      return m.type === 'error' ? m.code : m.type;
    } catch {
      return 'garbled';
    }
  }

  it('answers mutated join frames (valid tokens included) with a documented code and leaves no session behind', async () => {
    const codes: Record<string, number> = {};
    let runs = 0;
    const joinArb = fc.tuple(fc.nat(4), opsArb, relayStructured('relay-token'), fc.boolean()).map(([m, ops, other, fresh]) => {
      const mutateIt = m > 0;
      const issued = service.issueTokens({ a: 'alice', b: 'bob' });
      const token = fresh ? issued.a : issued.b;
      const s = { type: 0x40, name: 'relay-join', fields: [{ name: 'token', spec: RELAY_SCHEMAS['relay-join'].fields.token, bytes: encodeRelayBody('relay-join', { token }) }] };
      return mutateIt ? mutate(s, ops, other).bytes : encodeRelayFrame('relay-join', { token });
    });
    await fc.assert(
      fc.asyncProperty(joinArb, async (bytes) => {
        runs++;
        const code = await answer(bytes);
        codes[code] = (codes[code] ?? 0) + 1;
        expect(DOCUMENTED.has(code) || code === 'closed').toBe(true);
      }),
      { numRuns: scale(250, 3000) },
    );
    // A lone valid join waits for its partner and times out; everything else is refused: nothing stays.
    const t0 = Date.now();
    while ((service.stats().pending > 0 || service.stats().active > 0) && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    expect(service.stats()).toMatchObject({ pending: 0, active: 0 });
    stats.joins = { runs, codes };
    record('fuzz-relay', 'relay', stats);
  });

  it('refuses a junk-bodied join in the relay range, and a relay-end or relay-paired sent as a join', async () => {
    expect(await answer(encodeFrame(0x40, Buffer.from([0xff, 0xff, 1])))).toBe('ERR_MALFORMED_FRAME');
    expect(await answer(encodeRelayFrame('relay-end', { sessionId: 's', reason: 'eof', code: '', bytesSent: 0, bytesReceived: 0 }))).toBe('ERR_UNEXPECTED_MESSAGE');
    expect(await answer(encodeFrame(0x4f, Buffer.alloc(0)))).toBe('ERR_UNEXPECTED_MESSAGE');
  });
});
