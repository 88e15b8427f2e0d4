/**
 * Framing: every message travels as one frame
 *
 * ```
 *  0      1      2         3      4             6
 * +------+------+---------+------+-------------+-------------------+
 * | 0x54 | 0x50 | version | type | body length | body (length B)   |
 * | 'T'  | 'P'  |  (1)    |      | u16, BE     |                   |
 * +------+------+---------+------+-------------+-------------------+
 * ```
 *
 * The {@link FrameDecoder} is incremental and type-agnostic: it validates the magic, the version and the length
 * (against a per-decoder maximum, never more than {@link MAX_FRAME_SIZE}) before buffering any body byte, so it
 * never allocates more than one maximum-size body, and it only ever throws a {@link TcpPunchError} with one of
 * the codes `ERR_BAD_MAGIC`, `ERR_UNSUPPORTED_VERSION`, `ERR_FRAME_TOO_LARGE`. After an error it stays failed.
 */
import { TcpPunchError, invalidArgType, outOfRange } from '../errors.js';

/** The protocol version this implementation speaks (byte 2 of every frame). */
export const PROTOCOL_VERSION = 2;
/** Size of the fixed frame header in bytes. */
export const HEADER_SIZE = 6;
/** The hard upper bound of a frame body (the u16 length field). */
export const MAX_FRAME_SIZE = 0xffff;
/** The default maximum body size a decoder accepts. */
export const DEFAULT_MAX_FRAME_SIZE = 4096;

const MAGIC0 = 0x54;
const MAGIC1 = 0x50;

/** A frame as it came off the wire: its type byte and its undecoded body. */
export interface RawFrame {
  readonly type: number;
  readonly body: Buffer;
}

/** Encodes one frame. Throws `ERR_FRAME_TOO_LARGE` if the body exceeds {@link MAX_FRAME_SIZE}. */
export function encodeFrame(type: number, body: Uint8Array): Buffer {
  return encodeFrameAs(PROTOCOL_VERSION, type, body);
}

/**
 * The oldest version whose `error` frame has today's layout (code, message): a frame of a version from here to
 * {@link PROTOCOL_VERSION} is refused with an `error` frame of the sender's own version, which it can read.
 */
export const FIRST_VERSION = 1;

/** Encodes one frame with another version byte: only for the `error` frame answering a frame of that version. */
export function encodeFrameAs(version: number, type: number, body: Uint8Array): Buffer {
  checkHeader(type, body.length);
  const out = Buffer.allocUnsafe(HEADER_SIZE + body.length);
  writeHeader(out, version, type, body.length);
  out.set(body, HEADER_SIZE);
  return out;
}

/** Throws unless `type` is a byte and a body of `length` bytes fits a frame (`ERR_FRAME_TOO_LARGE`). */
function checkHeader(type: number, length: number): void {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw outOfRange('type', '0..255', type);
  if (length > MAX_FRAME_SIZE) {
    throw new TcpPunchError('ERR_FRAME_TOO_LARGE', `Frame body of ${length} bytes exceeds ${MAX_FRAME_SIZE}`, { size: length });
  }
}

/** Writes a frame header into `out[0..HEADER_SIZE)` for a body of `length` bytes that follows it (checked as above). */
export function writeHeader(out: Buffer, version: number, type: number, length: number): void {
  checkHeader(type, length);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = version;
  out[3] = type;
  out[4] = length >>> 8;
  out[5] = length & 0xff;
}

/** Options of a {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Largest accepted body in bytes, 0..65535; default {@link DEFAULT_MAX_FRAME_SIZE}. */
  maxFrameSize?: number;
}

/** An incremental frame parser: `write()` bytes as they arrive, then `read()` frames until it returns undefined. */
export class FrameDecoder {
  /** Largest body this decoder accepts. */
  readonly maxFrameSize: number;
  private chunks: Buffer[] = [];
  private size = 0;
  private failure: TcpPunchError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    const max = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    if (typeof max !== 'number') throw invalidArgType('options.maxFrameSize', 'of type number', max);
    if (!Number.isInteger(max) || max < 0 || max > MAX_FRAME_SIZE)
      throw outOfRange('options.maxFrameSize', `an integer in 0..${MAX_FRAME_SIZE}`, max);
    this.maxFrameSize = max;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.size;
  }

  /** The error that stopped this decoder, if any. */
  get error(): TcpPunchError | undefined {
    return this.failure;
  }

  /** Queues received bytes (no copy). Throws the decoder's error if it has already failed. */
  write(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.size += chunk.length;
  }

  /**
   * Returns the next complete frame, or undefined if more bytes are needed.
   * Throws a coded {@link TcpPunchError} on a bad header; the decoder then stays failed.
   */
  read(): RawFrame | undefined {
    if (this.failure) throw this.failure;
    const have = Math.min(this.size, HEADER_SIZE);
    if (have === 0) return undefined;
    const head = this.peek(have);
    if (head[0] !== MAGIC0 || (have > 1 && head[1] !== MAGIC1)) {
      return this.fail(new TcpPunchError('ERR_BAD_MAGIC', 'Not a tcp-punch frame (bad magic bytes)'));
    }
    if (have > 2 && head[2] !== PROTOCOL_VERSION) {
      return this.fail(
        new TcpPunchError('ERR_UNSUPPORTED_VERSION', versionMismatch(head[2]!), {
          version: head[2],
          supported: PROTOCOL_VERSION,
        }),
      );
    }
    if (have < HEADER_SIZE) return undefined;
    const len = head.readUInt16BE(4);
    if (len > this.maxFrameSize) {
      return this.fail(
        new TcpPunchError('ERR_FRAME_TOO_LARGE', `Frame body of ${len} bytes exceeds the limit of ${this.maxFrameSize}`, {
          size: len,
          limit: this.maxFrameSize,
        }),
      );
    }
    if (this.size < HEADER_SIZE + len) return undefined;
    const type = head[3]!;
    this.consume(HEADER_SIZE);
    return { type, body: this.consume(len) };
  }

  /** Removes and returns every byte not yet returned as a frame (used when handing a socket over). */
  takeRest(): Buffer {
    const rest = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    return rest;
  }

  private fail(err: TcpPunchError): never {
    this.failure = err;
    this.chunks = [];
    this.size = 0;
    throw err;
  }

  /** The first n (<= HEADER_SIZE) buffered bytes, copied only if they span chunks. */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (off === n) break;
    }
    return out;
  }

  /** Removes n buffered bytes; a view when they sit in one chunk, else one copy of exactly n bytes. */
  private consume(n: number): Buffer {
    this.size -= n;
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first!.length > n) {
      this.chunks[0] = first!.subarray(n);
      return first!.subarray(0, n);
    }
    if (first!.length === n) {
      this.chunks.shift();
      return first!;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** The text of `ERR_UNSUPPORTED_VERSION`: names the version received and the one spoken here. */
export function versionMismatch(received: number): string {
  return `Protocol version ${received} is not supported: this end speaks version ${PROTOCOL_VERSION}`;
}
