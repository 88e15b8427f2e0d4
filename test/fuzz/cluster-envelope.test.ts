/**
 * The cluster's sealed boxes and bus envelopes against arbitrary input: nothing but a box sealed with the cluster
 * key for that exact context opens, and decoding any opened plaintext either yields a well-formed envelope or
 * throws a coded TcpPunchError, never anything else.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { deriveClusterKeys, transitKey } from '../../lib/cluster/crypto.js';
import { open, seal } from '../../lib/cluster/crypto.js';
import { decodeEnvelope, encodeEnvelope } from '../../lib/cluster/envelope.js';
import { CoordRoutes } from '../../lib/cluster/remote.js';
import { TcpPunchError } from '../../lib/errors.js';
import { wrapPairKey } from '../../lib/protocol/crypto.js';

const keys = deriveClusterKeys('fuzz-cluster-secret-0123456789');
const other = deriveClusterKeys('another-cluster-secret-987654');

describe('cluster sealed boxes and envelopes', () => {
  it('a box opens only with its key and its context', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), (plain, ctx, ctx2) => {
        const box = seal(keys.bus, ctx, plain);
        expect(open(keys.bus, ctx, box)).toEqual(Buffer.from(plain));
        expect(open(other.bus, ctx, box)).toBeUndefined();
        expect(open(keys.store, ctx, box)).toBeUndefined();
        if (ctx2 !== ctx) expect(open(keys.bus, ctx2, box)).toBeUndefined();
        const i = box.length - 1 - (plain.length % box.length);
        const flipped = Buffer.from(box);
        flipped[i] = flipped[i]! ^ 0x01;
        expect(open(keys.bus, ctx, flipped)).toBeUndefined();
      }),
    );
  });

  it('arbitrary bytes never open and never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        expect(open(keys.bus, 'c', b)).toBeUndefined();
      }),
    );
  });

  it('decoding any plaintext yields an envelope or a coded error', () => {
    const valid = [
      encodeEnvelope({ kind: 'to-coordinator', fromNode: 'n1', coordId: Buffer.alloc(16, 7), fromPeer: 'p', msg: { type: 'ping', seq: 1, rttUs: 0 } }),
      encodeEnvelope({ kind: 'deliver', fromNode: 'n1', peerId: 'p', epoch: '17', msg: { type: 'ping', seq: 1, rttUs: 0 } }),
    ];
    const mutated = fc.tuple(fc.nat(1), fc.nat(valid[0]!.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid[0]!.length)).map(([k, i, v, cut]) => {
      const b = Buffer.from(valid[k]!);
      b[i] = v;
      return b.subarray(0, Math.max(cut, i + 1));
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 120 }).map((u) => Buffer.from(u)), mutated), (b) => {
        try {
          const e = decodeEnvelope(b);
          expect(['deliver', 'to-coordinator', 'revoke']).toContain(e.kind);
          expect(e.fromNode.length).toBeGreaterThan(0);
        } catch (err) {
          expect(err).toBeInstanceOf(TcpPunchError);
          expect((err as TcpPunchError).code).toMatch(/^ERR_[A-Z_]+$/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips every kind', () => {
    const now = 1_700_000_000_000;
    const cases = [
      { kind: 'deliver', fromNode: 'n1', peerId: 'bob', msg: { type: 'ping', seq: 5, rttUs: 0 } },
      { kind: 'to-coordinator', fromNode: 'n2', coordId: Uint8Array.from(Buffer.alloc(16, 1)), fromPeer: 'bob', msg: { type: 'pong', seq: 6 } },
      { kind: 'revoke', fromNode: 'n3', peerId: 'bob', epoch: '1764660000000000' },
      { kind: 'deliver', fromNode: 'n1', peerId: 'bob', epoch: '42', msg: { type: 'ping', seq: 7, rttUs: 0 } },
    ] as const;
    for (const c of cases) expect(decodeEnvelope(encodeEnvelope(c, now))).toMatchObject({ ...c, sentAt: now });
    // A deliver without an epoch decodes without one (the owner then checks nothing).
    expect(decodeEnvelope(encodeEnvelope(cases[0], now))).not.toHaveProperty('epoch');
    // An epoch must be decimal digits, on both ends.
    expect(() => encodeEnvelope({ ...cases[3], epoch: '4x' }, now)).toThrow(expect.objectContaining({ code: 'ERR_CLUSTER_MALFORMED' }));
  });

  it('a pair key wrapped with the transit key re-wraps to the session key', () => {
    const coordId = Buffer.alloc(16, 2);
    const pairKey = Buffer.alloc(32, 0xab);
    const session = Buffer.alloc(32, 0x11);
    const inTransit = wrapPairKey(transitKey(keys, 'bob'), coordId, pairKey);
    expect(inTransit.equals(pairKey)).toBe(false);
    const forPeer = wrapPairKey(session, coordId, wrapPairKey(transitKey(keys, 'bob'), coordId, inTransit));
    expect(wrapPairKey(session, coordId, forPeer)).toEqual(pairKey);
    expect(transitKey(keys, 'bob').equals(transitKey(keys, 'alice'))).toBe(false);
    expect(transitKey(keys, 'bob').equals(transitKey(other, 'bob'))).toBe(false);
  });

  it('coordination routes expire, are bounded, and drop with their node', () => {
    const r = new CoordRoutes({ ttlMs: 100, maxEntries: 3 });
    const id = (n: number): Buffer => Buffer.alloc(16, n);
    r.set(id(1), 'n1', 0);
    expect(r.get(id(1), 50)).toBe('n1');
    expect(r.get(id(1), 100)).toBeUndefined();
    for (let i = 2; i <= 6; i++) r.set(id(i), i % 2 ? 'n1' : 'n2', 10);
    expect(r.size).toBe(3);
    expect(r.get(id(2), 20)).toBeUndefined(); // the oldest went first
    expect(r.dropNode('n2')).toEqual([id(4).toString('hex'), id(6).toString('hex')]);
    expect(r.get(id(5), 20)).toBe('n1');
    r.delete(id(5));
    expect(r.get(id(5), 20)).toBeUndefined();
  });
});
