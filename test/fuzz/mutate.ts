/**
 * Structure-aware mutation of valid frames, for the fuzz tests and the live malformed-frame flood.
 *
 * A valid message is encoded field by field (so every field's bytes and spec are known), then 1..4 mutations are
 * applied, each chosen by fast-check from integers, so a failing case shrinks and replays from its seed:
 *
 * - field level, by spec: integers at their boundaries, bools above 1, fixed byte strings one byte short or long,
 *   varbytes with a length outside the allowed set, strings whose length prefix exceeds the maximum or the body,
 *   invalid UTF-8 (overlong, lone surrogate, 0xff), pattern violations (space, empty, 65 characters), enum
 *   indices past the end, endpoints with names, bad ports, 46-byte hosts, counts above the maximum or above what
 *   follows; a field dropped, duplicated, or swapped with its neighbour;
 * - frame level: the magic, the version, the type (any other assigned or unassigned type: schema confusion), the
 *   length field (0, one off, beyond the limit, 0xffff), truncation, trailing junk, a bit flip anywhere, two
 *   frames spliced.
 */
import fc from 'fast-check';

import { BodyWriter, f, writeField } from '../../lib/protocol/fields.js';
import type { FieldSpec } from '../../lib/protocol/fields.js';
import { HEADER_SIZE, encodeFrame } from '../../lib/protocol/frame.js';
import { PEER_ID_PATTERN, RELAY_TYPES, SCHEMAS } from '../../lib/protocol/messages.js';
import type { SchemaName } from '../../lib/protocol/messages.js';
import { RELAY_END_REASONS } from '../../lib/relay/frames.js';
import { MAX_TOKEN_LENGTH } from '../../lib/relay/tokens.js';
import { fieldArb } from '../helpers/rendezvous-arbitraries.js';

/** A field of a message body: its name, spec and encoded bytes. */
export interface EncodedField {
  name: string;
  spec: FieldSpec | { kind: 'u64' };
  bytes: Buffer;
}

/** A message encoded field by field. */
export interface Structured {
  type: number;
  name: string;
  fields: EncodedField[];
}

const u64 = { kind: 'u64' } as const;
const sid = () => f.string(64, PEER_ID_PATTERN);

/**
 * The relay bodies (lib/relay/frames.ts keeps its schemas private): a test-side copy, checked against the real
 * encoder by test/fuzz/relay.test.ts so that it cannot drift.
 */
export const RELAY_SCHEMAS = {
  'relay-join': { type: RELAY_TYPES['relay-join'], fields: { token: f.string(MAX_TOKEN_LENGTH) } },
  'relay-paired': {
    type: RELAY_TYPES['relay-paired'],
    fields: { sessionId: sid(), side: f.enum('a', 'b'), peer: sid(), maxBytes: u64, maxDurationMs: u64 },
  },
  'relay-token-request': { type: RELAY_TYPES['relay-token-request'], fields: { reqId: f.u32(), target: sid() } },
  'relay-token': {
    type: RELAY_TYPES['relay-token'],
    fields: {
      reqId: f.u32(),
      sessionId: sid(),
      side: f.enum('a', 'b'),
      peer: sid(),
      token: f.string(MAX_TOKEN_LENGTH),
      expiresInMs: f.u32(),
      relay: f.endpoints(4),
    },
  },
  'relay-end': {
    type: RELAY_TYPES['relay-end'],
    fields: {
      sessionId: sid(),
      reason: f.enum(...RELAY_END_REASONS),
      code: f.string(48, /^([A-Z][A-Z0-9_]{1,47})?$/),
      bytesSent: u64,
      bytesReceived: u64,
    },
  },
} as const;

export type RelayBodyName = keyof typeof RELAY_SCHEMAS;

type AnySpec = FieldSpec | { kind: 'u64' };

function encodeField(spec: AnySpec, value: unknown, name: string): Buffer {
  const w = new BodyWriter();
  if (spec.kind === 'u64') {
    const n = value as number;
    w.u32(Math.floor(n / 2 ** 32));
    w.u32(n % 2 ** 32);
  } else {
    writeField(w, spec, value, name);
  }
  return w.finish();
}

function fieldValueArb(spec: AnySpec): fc.Arbitrary<unknown> {
  if (spec.kind === 'u64') return fc.maxSafeNat();
  return fieldArb(spec);
}

function structuredArb(name: string, type: number, fields: Record<string, AnySpec>): fc.Arbitrary<Structured> {
  const rec: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [k, spec] of Object.entries(fields)) rec[k] = fieldValueArb(spec);
  return fc.record(rec).map((v) => ({
    type,
    name,
    fields: Object.entries(fields).map(([k, spec]) => ({ name: k, spec, bytes: encodeField(spec, v[k], k) })),
  }));
}

/** A valid message of a schema, encoded field by field. */
export function schemaStructured(name: SchemaName): fc.Arbitrary<Structured> {
  const s = SCHEMAS[name] as { type: number; fields: Record<string, FieldSpec> };
  return structuredArb(name, s.type, s.fields);
}

/** A valid relay message body, encoded field by field. */
export function relayStructured(name: RelayBodyName): fc.Arbitrary<Structured> {
  const s = RELAY_SCHEMAS[name] as { type: number; fields: Record<string, AnySpec> };
  return structuredArb(name, s.type, s.fields);
}

/** Any valid message (schemas and relay bodies). */
export const anyStructured: fc.Arbitrary<Structured> = fc.oneof(
  ...(Object.keys(SCHEMAS) as SchemaName[]).map(schemaStructured),
  ...(Object.keys(RELAY_SCHEMAS) as RelayBodyName[]).map(relayStructured),
);

export function bodyOf(s: Structured): Buffer {
  return Buffer.concat(s.fields.map((x) => x.bytes));
}

export function frameOf(s: Structured): Buffer {
  return encodeFrame(s.type, bodyOf(s));
}

const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const str = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);

/** Invalid replacements for one field, by spec; `k` picks one. */
function badField(spec: AnySpec, bytes: Buffer, k: number, r: number): { bytes: Buffer; op: string } {
  const pick = <T>(xs: T[]): T => xs[k % xs.length]!;
  switch (spec.kind) {
    case 'u8':
      return { bytes: Buffer.from([pick([0, 1, 0x7f, 0x80, 0xff, r & 0xff])]), op: 'u8-boundary' };
    case 'u16':
      return { bytes: u16(pick([0, 1, 0x7fff, 0x8000, 0xffff, r & 0xffff])), op: 'u16-boundary' };
    case 'u32': {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff, r >>> 0]));
      return { bytes: b, op: 'u32-boundary' };
    }
    case 'u64':
      return { bytes: Buffer.from(pick([[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0, 0x20, 0, 0, 0, 0, 0, 0], [0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]])), op: 'u64-unsafe' };
    case 'bool':
      return { bytes: Buffer.from([2 + (r % 254)]), op: 'bool>1' };
    case 'bytes':
      return pick([
        { bytes: bytes.subarray(0, Math.max(0, bytes.length - 1)), op: 'bytes-short' },
        { bytes: Buffer.concat([bytes, Buffer.from([r & 0xff])]), op: 'bytes-long' },
      ]);
    case 'varbytes': {
      const bad = [...Array(256).keys()].filter((n) => !spec.lens.includes(n));
      const len = bad[r % bad.length]!;
      return pick([
        { bytes: Buffer.concat([Buffer.from([len]), Buffer.alloc(Math.min(len, 40), 7)]), op: 'varbytes-len' },
        { bytes: Buffer.from([spec.lens[spec.lens.length - 1]!]), op: 'varbytes-missing' },
      ]);
    }
    case 'string': {
      const long = Buffer.alloc(spec.max + 1 + (r % 3), 0x61);
      return pick([
        { bytes: str(long), op: 'string-too-long' },
        { bytes: Buffer.concat([u16(0xffff), Buffer.from('x')]), op: 'string-prefix-past-end' },
        { bytes: Buffer.concat([u16(Math.min(spec.max, 40)), Buffer.from('ab')]), op: 'string-truncated' },
        { bytes: str(Buffer.from([0xc0, 0x80])), op: 'utf8-overlong' },
        { bytes: str(Buffer.from([0xed, 0xa0, 0x80])), op: 'utf8-surrogate' },
        { bytes: str(Buffer.from([0x61, 0xff, 0x62])), op: 'utf8-invalid' },
        { bytes: str(Buffer.from([0xef, 0xbb, 0xbf, 0x61])), op: 'utf8-bom' },
        { bytes: str(Buffer.from('has space')), op: 'pattern-space' },
        { bytes: str(Buffer.alloc(0)), op: 'string-empty' },
        { bytes: str(Buffer.alloc(Math.min(spec.max, 65), 0x5a)), op: 'string-max' },
        { bytes: str(Buffer.from('__proto__')), op: 'string-proto' },
      ]);
    }
    case 'enum':
      return { bytes: Buffer.from([spec.values.length + (r % (256 - spec.values.length))]), op: 'enum-past-end' };
    case 'endpoint':
    case 'endpoints': {
      const ep = (host: Buffer, port: number): Buffer => Buffer.concat([str(host), u16(port)]);
      const bads = [
        ep(Buffer.from('example.com'), 80),
        ep(Buffer.from('1.2.3.256'), 80),
        ep(Buffer.from('127.0.0.1'), 0),
        ep(Buffer.alloc(46, 0x31), 1),
        ep(Buffer.alloc(0), 1),
        ep(Buffer.from('::ffff:1.2.3.4%eth0'), 1),
      ];
      const one = bads[k % bads.length]!;
      if (spec.kind === 'endpoint') return { bytes: one, op: 'endpoint-bad' };
      return pick([
        { bytes: Buffer.concat([Buffer.from([1]), one]), op: 'endpoints-bad' },
        { bytes: Buffer.from([spec.max + 1 + (r % 10)]), op: 'endpoints-count' },
        { bytes: Buffer.concat([Buffer.from([3]), ep(Buffer.from('10.0.0.1'), 9)]), op: 'endpoints-short' },
      ]);
    }
  }
}

/** One mutation: what to do, and integers that parameterise it. */
export type Op = [kind: number, a: number, b: number];

/** The op arbitrary: 1..4 mutations. */
export const opsArb: fc.Arbitrary<Op[]> = fc.array(fc.tuple(fc.nat(31), fc.nat(), fc.nat()), { minLength: 1, maxLength: 4 });

const ALL_TYPES = [
  ...Object.values(SCHEMAS).map((s) => s.type),
  ...Object.values(RELAY_TYPES),
  0x00, 0x09, 0x1b, 0x22, 0x31, 0x45, 0x4f, 0x50, 0x7f, 0xff,
];

/**
 * Applies mutations to a structured message and returns the wire bytes plus the names of what was done.
 * `other` is a second valid message, for splices and schema confusion.
 */
export function mutate(s: Structured, ops: Op[], other: Structured): { bytes: Buffer; ops: string[] } {
  let fields = s.fields.map((x) => ({ ...x }));
  let type = s.type;
  const done: string[] = [];
  // Field-level mutations first (they need the structure), then frame-level ones on the bytes.
  const frameOps: Op[] = [];
  for (const op of ops) {
    const [kind, a, b] = op;
    if (kind >= 16 || fields.length === 0) {
      frameOps.push(op);
      continue;
    }
    const i = a % fields.length;
    const fld = fields[i]!;
    if (kind < 10) {
      const bad = badField(fld.spec, fld.bytes, b, a ^ b);
      fields[i] = { ...fld, bytes: bad.bytes };
      done.push(`${fld.name}:${bad.op}`);
    } else if (kind < 12) {
      fields = fields.filter((_, j) => j !== i);
      done.push(`${fld.name}:dropped`);
    } else if (kind < 14) {
      fields.splice(i, 0, { ...fld });
      done.push(`${fld.name}:duplicated`);
    } else if (fields.length > 1) {
      const j = (i + 1) % fields.length;
      [fields[i], fields[j]] = [fields[j]!, fields[i]!];
      done.push(`${fld.name}:swapped`);
    }
  }
  let body = Buffer.concat(fields.map((x) => x.bytes));
  if (body.length > 0xffff) body = body.subarray(0, 0xffff);
  let wire = encodeFrame(type, body);
  for (const [kind, a, b] of frameOps) {
    switch (kind % 16) {
      case 0:
      case 1:
        if (wire.length < 4) break;
        type = ALL_TYPES[a % ALL_TYPES.length]!;
        wire[3] = type;
        done.push(`type=0x${type.toString(16)}`);
        break;
      case 2:
        if (wire.length < 4) break;
        wire = Buffer.concat([wire.subarray(0, 4), u16(bodyOf(other).length), bodyOf(other)]);
        done.push(`body-of:${other.name}`);
        break;
      case 3: {
        if (wire.length < HEADER_SIZE) break;
        const len = [0, Math.max(0, body.length - 1), body.length + 1, 0xffff, 4096, 4097, 129, a & 0xffff][b % 8]!;
        wire = Buffer.from(wire);
        wire.writeUInt16BE(len, 4);
        done.push(`length=${len}`);
        break;
      }
      case 4:
        wire = wire.subarray(0, a % (wire.length + 1));
        done.push(`truncated@${wire.length}`);
        break;
      case 5:
        wire = Buffer.concat([wire, Buffer.from([a & 0xff, b & 0xff, (a >> 8) & 0xff].slice(0, 1 + (b % 3)))]);
        done.push('trailing-junk');
        break;
      case 6:
      case 7:
      case 8: {
        if (wire.length === 0) break;
        const at = a % wire.length;
        wire = Buffer.from(wire);
        wire[at]! ^= 1 << (b % 8);
        done.push(`bitflip@${at}`);
        break;
      }
      case 9:
        wire = Buffer.from(wire);
        if (wire.length > 2) wire[2] = [0, 2, 0xff][b % 3]!;
        done.push('version');
        break;
      case 10:
        wire = Buffer.from(wire);
        if (wire.length > 0) wire[b % Math.min(2, wire.length)] = a & 0xff;
        done.push('magic');
        break;
      case 11:
        wire = Buffer.concat([wire, frameOf(other)]);
        done.push(`then:${other.name}`);
        break;
      case 12: {
        // Body of the right length but the fields of another message: schema confusion with a valid length.
        if (wire.length < 4) break;
        const ob = bodyOf(other);
        wire = Buffer.concat([wire.subarray(0, HEADER_SIZE - 2), u16(ob.length), ob]);
        done.push(`fields-of:${other.name}`);
        break;
      }
      default: {
        // Random bytes inserted somewhere in the body (the length field adjusted: the frame stays well framed).
        if (wire.length < HEADER_SIZE) break;
        const ins = Buffer.alloc(1 + (a % 8), b & 0xff);
        const at = HEADER_SIZE + (b % (Math.max(1, wire.length - HEADER_SIZE + 1)));
        const nb = Buffer.concat([wire.subarray(HEADER_SIZE, at), ins, wire.subarray(at)]);
        if (nb.length <= 0xffff) wire = Buffer.concat([wire.subarray(0, 4), u16(nb.length), nb]);
        done.push('inserted');
      }
    }
  }
  return { bytes: wire, ops: done };
}

/** A mutated frame: a valid message, then 1..4 structure-aware mutations. */
export const mutatedFrameArb: fc.Arbitrary<{ bytes: Buffer; ops: string[]; from: string }> = fc
  .tuple(anyStructured, opsArb, anyStructured)
  .map(([s, ops, other]) => ({ ...mutate(s, ops, other), from: s.name }));

/** A mutated body of one relay message (for decodeRelay). */
export function mutatedRelayArb(): fc.Arbitrary<{ type: number; body: Buffer; ops: string[] }> {
  const relay = fc.oneof(...(Object.keys(RELAY_SCHEMAS) as RelayBodyName[]).map(relayStructured));
  return fc.tuple(relay, opsArb, relay).map(([s, ops, other]) => {
    const fieldOps = ops.map(([k, a, b]) => [k % 16, a, b] as Op);
    const m = mutate(s, fieldOps, other);
    return { type: s.type, body: m.bytes.subarray(HEADER_SIZE), ops: m.ops };
  });
}
