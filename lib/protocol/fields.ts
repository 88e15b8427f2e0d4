/**
 * Field codecs for message bodies: a small set of typed, bounded primitives from which every message schema in
 * `messages.ts` is built, plus a {@link BodyReader} / {@link BodyWriter} that other modules (the relay) can use to
 * define bodies of their own with the same strictness.
 *
 * All integers are big-endian. Strings are UTF-8 with a u16 byte-length prefix and must decode without
 * replacement characters. Reading past the end of a body, a value out of its declared range, or trailing bytes
 * are all `ERR_MALFORMED_FRAME`; nothing here throws anything but a {@link TcpPunchError}.
 */
import { isIP } from 'node:net';

import type { Endpoint } from '../endpoint.js';
import { TcpPunchError } from '../errors.js';
import { HEADER_SIZE, writeHeader } from './frame.js';

/** On the wire an endpoint's host is always a numeric IPv4/IPv6 address. */
export type { Endpoint } from '../endpoint.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The error every body parser raises: code `ERR_MALFORMED_FRAME`. */
export function malformed(message: string, details: Record<string, unknown> = {}): TcpPunchError {
  return new TcpPunchError('ERR_MALFORMED_FRAME', message, details);
}

/** Normalises an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) to plain IPv4; '' for undefined. */
export function unmapAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** Cuts `s` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s;
  let out = '';
  let size = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (size + n > maxBytes) break;
    out += ch;
    size += n;
  }
  return out;
}

/** Reads typed fields from one frame body; every read is bounds-checked. */
export class BodyReader {
  private offset = 0;

  constructor(private readonly body: Uint8Array) {}

  /** Number of unread bytes. */
  get remaining(): number {
    return this.body.length - this.offset;
  }

  private take(n: number, what: string): Uint8Array {
    if (n > this.remaining) throw malformed(`Body ends inside ${what}`, { field: what });
    const out = this.body.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u8(what: string): number {
    return this.take(1, what)[0]!;
  }

  u16(what: string): number {
    const b = this.take(2, what);
    return (b[0]! << 8) | b[1]!;
  }

  u32(what: string): number {
    const b = this.take(4, what);
    return ((b[0]! << 24) >>> 0) + ((b[1]! << 16) | (b[2]! << 8) | b[3]!);
  }

  /** A copy of exactly `n` bytes (a plain Uint8Array that owns its memory). */
  bytes(n: number, what: string): Uint8Array {
    return new Uint8Array(this.take(n, what));
  }

  /** A u16-length-prefixed UTF-8 string of at most `max` bytes. */
  string(max: number, what: string): string {
    const len = this.u16(what);
    if (len > max) throw malformed(`${what} is longer than ${max} bytes`, { field: what });
    try {
      return utf8.decode(this.take(len, what));
    } catch (err) {
      if (err instanceof TcpPunchError) throw err;
      throw malformed(`${what} is not valid UTF-8`, { field: what });
    }
  }

  /** Throws unless the whole body has been consumed. */
  end(): void {
    if (this.remaining !== 0) throw malformed(`${this.remaining} trailing bytes after the last field`);
  }
}

/**
 * Appends typed fields to a growing body, written in place into one buffer (no part per field). With `headroom`,
 * that many bytes stay free in front of the body: {@link BodyWriter.frame} fills them with the frame header, so a
 * message is encoded with one allocation and no copy.
 */
export class BodyWriter {
  private buf: Buffer;
  private pos: number;
  private readonly start: number;

  constructor(headroom = 0) {
    this.start = this.pos = headroom;
    this.buf = Buffer.allocUnsafe(headroom + INITIAL_CAPACITY);
  }

  /** Bytes of body written so far. */
  get size(): number {
    return this.pos - this.start;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.pos++] = v & 0xff;
  }

  u16(v: number): void {
    this.room(2);
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
  }

  u32(v: number): void {
    this.room(4);
    this.buf[this.pos++] = (v >>> 24) & 0xff;
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s); // lone surrogates count as U+FFFD (3 bytes), as they are written
    this.u16(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }

  /** The body written so far (a view of the writer's buffer: write no more after taking it). */
  finish(): Buffer {
    return this.buf.subarray(this.start, this.pos);
  }

  /**
   * The body as a complete frame: the header is written into the headroom (which must be {@link HEADER_SIZE}).
   * Throws `ERR_FRAME_TOO_LARGE` as {@link encodeFrameAs} does.
   */
  frame(version: number, type: number): Buffer {
    if (this.start !== HEADER_SIZE) throw new RangeError(`BodyWriter.frame needs a headroom of ${HEADER_SIZE} bytes`);
    writeHeader(this.buf, version, type, this.pos - HEADER_SIZE);
    return this.buf.subarray(0, this.pos);
  }
}

/** Enough for every control message but the largest (endpoint lists): a body rarely grows its buffer. */
const INITIAL_CAPACITY = 250;

/** One typed field of a message schema. */
export type FieldSpec =
  | { readonly kind: 'u8' | 'u16' | 'u32' }
  | { readonly kind: 'bool' }
  | { readonly kind: 'bytes'; readonly len: number }
  | { readonly kind: 'varbytes'; readonly lens: readonly number[] }
  | { readonly kind: 'string'; readonly max: number; readonly pattern?: RegExp }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  | { readonly kind: 'endpoint' }
  | { readonly kind: 'endpoints'; readonly max: number };

/** The JS value type a {@link FieldSpec} decodes to. */
export type FieldValue<F extends FieldSpec> = F extends { kind: 'u8' | 'u16' | 'u32' }
  ? number
  : F extends { kind: 'bool' }
    ? boolean
    : F extends { kind: 'bytes' | 'varbytes' }
      ? Uint8Array
      : F extends { kind: 'string' }
        ? string
        : F extends { kind: 'enum'; values: readonly (infer V)[] }
          ? V
          : F extends { kind: 'endpoint' }
            ? Endpoint
            : F extends { kind: 'endpoints' }
              ? Endpoint[]
              : never;

/** Field constructors used by the schemas. */
export const f = {
  u8: () => ({ kind: 'u8' }) as const,
  u16: () => ({ kind: 'u16' }) as const,
  u32: () => ({ kind: 'u32' }) as const,
  bool: () => ({ kind: 'bool' }) as const,
  /** Exactly `len` bytes, no length prefix. */
  bytes: <N extends number>(len: N) => ({ kind: 'bytes', len }) as const,
  /** A u8 length prefix, then one of the allowed lengths (e.g. 0 or 32 for an optional MAC). */
  varbytes: <const L extends readonly number[]>(...lens: L) => ({ kind: 'varbytes', lens }) as const,
  string: (max: number, pattern?: RegExp) => ({ kind: 'string', max, pattern }) as const,
  /** A u8 index into `values`, exposed as the string. */
  enum: <const V extends readonly string[]>(...values: V) => ({ kind: 'enum', values }) as const,
  endpoint: () => ({ kind: 'endpoint' }) as const,
  endpoints: (max: number) => ({ kind: 'endpoints', max }) as const,
};

const MAX_HOST = 45; // longest textual IPv6 address
const LONE_SURROGATE = /\p{Cs}/u; // in a u-regex a well-formed pair is one code point, so this finds only lone halves

function readEndpoint(r: BodyReader, what: string): Endpoint {
  const host = r.string(MAX_HOST, `${what}.host`);
  const port = r.u16(`${what}.port`);
  if (isIP(host) === 0) throw malformed(`${what}.host is not a numeric IP address`, { field: what });
  if (port === 0) throw malformed(`${what}.port must not be 0`, { field: what });
  return { host, port };
}

function checkEndpoint(e: unknown, what: string): Endpoint {
  if (typeof e !== 'object' || e === null) throw malformed(`${what} must be an endpoint`, { field: what });
  const { host, port } = e as Partial<Endpoint>;
  if (typeof host !== 'string' || host.length > MAX_HOST || isIP(host) === 0)
    throw malformed(`${what}.host must be a numeric IP address`, { field: what });
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw malformed(`${what}.port must be an integer in 1..65535`, { field: what });
  return { host, port };
}

/** Reads one field; throws `ERR_MALFORMED_FRAME` on any violation of the spec. */
export function readField(r: BodyReader, spec: FieldSpec, what: string): unknown {
  switch (spec.kind) {
    case 'u8':
      return r.u8(what);
    case 'u16':
      return r.u16(what);
    case 'u32':
      return r.u32(what);
    case 'bool': {
      const v = r.u8(what);
      if (v > 1) throw malformed(`${what} must be 0 or 1`, { field: what });
      return v === 1;
    }
    case 'bytes':
      return r.bytes(spec.len, what);
    case 'varbytes': {
      const len = r.u8(what);
      if (!spec.lens.includes(len)) throw malformed(`${what} has a length of ${len}`, { field: what });
      return r.bytes(len, what);
    }
    case 'string': {
      const s = r.string(spec.max, what);
      if (spec.pattern && !spec.pattern.test(s)) throw malformed(`${what} has an invalid format`, { field: what });
      return s;
    }
    case 'enum': {
      const i = r.u8(what);
      const v = spec.values[i];
      if (v === undefined) throw malformed(`${what} has an unknown value ${i}`, { field: what });
      return v;
    }
    case 'endpoint':
      return readEndpoint(r, what);
    case 'endpoints': {
      const n = r.u8(what);
      if (n > spec.max) throw malformed(`${what} lists more than ${spec.max} endpoints`, { field: what });
      const out: Endpoint[] = [];
      for (let i = 0; i < n; i++) out.push(readEndpoint(r, `${what}[${i}]`));
      return out;
    }
  }
}

/** True when `s` is well-formed (no lone surrogate) and at most `max` bytes of UTF-8. */
function fitsUtf8(s: string, max: number): boolean {
  const n = Buffer.byteLength(s);
  // As many bytes as UTF-16 units: all ASCII, so no surrogate to look for (ids, codes, most texts).
  return n <= max && (n === s.length || !LONE_SURROGATE.test(s));
}

function checkInt(v: unknown, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw malformed(`${what} must be an integer in 0..${max}`, { field: what });
  return v;
}

/** Validates a value against its spec and writes it; the writer refuses what the reader would refuse. */
export function writeField(w: BodyWriter, spec: FieldSpec, value: unknown, what: string): void {
  switch (spec.kind) {
    case 'u8':
      return w.u8(checkInt(value, 0xff, what));
    case 'u16':
      return w.u16(checkInt(value, 0xffff, what));
    case 'u32':
      return w.u32(checkInt(value, 0xffffffff, what));
    case 'bool':
      if (typeof value !== 'boolean') throw malformed(`${what} must be a boolean`, { field: what });
      return w.u8(value ? 1 : 0);
    case 'bytes':
      if (!(value instanceof Uint8Array) || value.length !== spec.len)
        throw malformed(`${what} must be ${spec.len} bytes`, { field: what });
      return w.bytes(value);
    case 'varbytes':
      if (!(value instanceof Uint8Array) || !spec.lens.includes(value.length))
        throw malformed(`${what} must be ${spec.lens.join(' or ')} bytes`, { field: what });
      w.u8(value.length);
      return w.bytes(value);
    case 'string':
      if (typeof value !== 'string' || !fitsUtf8(value, spec.max))
        throw malformed(`${what} must be a string of at most ${spec.max} bytes`, { field: what });
      if (spec.pattern && !spec.pattern.test(value)) throw malformed(`${what} has an invalid format`, { field: what });
      return w.string(value);
    case 'enum': {
      const i = typeof value === 'string' ? spec.values.indexOf(value) : -1;
      if (i < 0) throw malformed(`${what} must be one of ${spec.values.join(', ')}`, { field: what });
      return w.u8(i);
    }
    case 'endpoint': {
      const e = checkEndpoint(value, what);
      w.string(e.host);
      return w.u16(e.port);
    }
    case 'endpoints': {
      if (!Array.isArray(value) || value.length > spec.max)
        throw malformed(`${what} must be an array of at most ${spec.max} endpoints`, { field: what });
      w.u8(value.length);
      value.forEach((e, i) => {
        const ep = checkEndpoint(e, `${what}[${i}]`);
        w.string(ep.host);
        w.u16(ep.port);
      });
      return;
    }
  }
}
