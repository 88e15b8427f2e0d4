/**
 * Fuzzing the frame codec and the message layer with structure-aware mutations of valid frames (test/fuzz/
 * mutate.ts), beyond test/protocol.test.ts's random bytes and random bodies: only coded errors, never another
 * exception or a hang, canonical re-encoding of whatever decodes, bounded buffering under any chunking, and the
 * socket wrappers (FramedSocket, readMessage) answering every mutated stream with messages or one coded error.
 */
import { once } from 'node:events';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { TcpPunchError } from '../../lib/errors.js';
import { FIRST_VERSION, FrameDecoder, HEADER_SIZE, MAX_FRAME_SIZE, PROTOCOL_VERSION } from '../../lib/protocol/frame.js';
import { decodeMessage, encodeMessage } from '../../lib/protocol/messages.js';
import type { Message } from '../../lib/protocol/messages.js';
import { FramedSocket, readMessage } from '../../lib/protocol/stream.js';
import { socketPair } from '../helpers/pair.js';
import { record, scale } from '../reliability/summary.js';
import { anyStructured, frameOf, mutatedFrameArb } from './mutate.js';

const CODES = new Set(['ERR_BAD_MAGIC', 'ERR_UNSUPPORTED_VERSION', 'ERR_FRAME_TOO_LARGE', 'ERR_UNKNOWN_TYPE', 'ERR_MALFORMED_FRAME']);
const stats: Record<string, unknown> = {};

/** Decodes a byte stream fed in the given chunks, reading after each; returns messages and the coded error. */
function decodeChunked(bytes: Buffer, cuts: number[], maxFrameSize: number): { msgs: Message[]; error?: TcpPunchError; maxBuffered: number } {
  const d = new FrameDecoder({ maxFrameSize });
  const msgs: Message[] = [];
  let maxBuffered = 0;
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  try {
    for (const p of [...points, bytes.length]) {
      d.write(bytes.subarray(prev, p));
      prev = p;
      for (let f = d.read(); f; f = d.read()) msgs.push(decodeMessage(f));
      maxBuffered = Math.max(maxBuffered, d.buffered);
    }
    return { msgs, maxBuffered };
  } catch (err) {
    if (!(err instanceof TcpPunchError)) throw err;
    return { msgs, error: err, maxBuffered };
  }
}

describe('fuzz: frames and messages (structure-aware)', () => {
  it('rejects every mutation with a coded error or decodes it canonically, under any chunking, with bounded buffering', () => {
    const codes: Record<string, number> = {};
    const opsSeen = new Set<string>();
    let decoded = 0;
    let runs = 0;
    fc.assert(
      fc.property(mutatedFrameArb, fc.array(fc.nat(), { maxLength: 8 }), fc.constantFrom(128, 4096, MAX_FRAME_SIZE), (m, cuts, max) => {
        runs++;
        for (const op of m.ops) opsSeen.add(op.replace(/[@=:].*$/, '').replace(/^\w+:/, ''));
        const { msgs, error, maxBuffered } = decodeChunked(m.bytes, cuts, max);
        // After every read the decoder holds less than one frame of the largest accepted size.
        expect(maxBuffered).toBeLessThan(HEADER_SIZE + max);
        if (error) {
          expect(CODES.has(error.code)).toBe(true);
          codes[error.code] = (codes[error.code] ?? 0) + 1;
        }
        // Whatever decoded re-encodes to the exact bytes it came from (one encoding per message).
        const reencoded = Buffer.concat(msgs.map(encodeMessage));
        expect(reencoded.equals(m.bytes.subarray(0, reencoded.length))).toBe(true);
        decoded += msgs.length;
      }),
      { numRuns: scale(20_000, 300_000) },
    );
    stats.codec = { runs, decodedMessages: decoded, codes, mutationKinds: opsSeen.size };
    // The mutator reaches every error class of the codec.
    expect(Object.keys(codes).sort()).toEqual([...CODES].sort());
  });

  it('decodes a valid stream split at any points identically after any number of valid frames (no state leaks)', () => {
    fc.assert(
      fc.property(fc.array(anyStructured, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (ss, cuts) => {
        const wire = Buffer.concat(ss.map(frameOf));
        const { msgs, error } = decodeChunked(wire, cuts, MAX_FRAME_SIZE);
        expect(error).toBeUndefined();
        expect(Buffer.concat(msgs.map(encodeMessage)).equals(wire)).toBe(true);
      }),
      { numRuns: scale(2000, 20_000) },
    );
  });

  it('FramedSocket answers any mutated stream with messages and at most one coded error frame, then closes', async () => {
    const codes: Record<string, number> = {};
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(mutatedFrameArb, { minLength: 1, maxLength: 3 }), async (ms) => {
        runs++;
        const [a, b] = await socketPair();
        a.on('error', () => undefined);
        const framed = new FramedSocket(b, { maxFrameSize: 4096, lingerMs: 200 });
        const errors: string[] = [];
        framed.on('protocol-error', (e) => errors.push(e.code));
        framed.on('message', () => undefined);
        const closed = once(framed, 'close');
        const wire = Buffer.concat(ms.map((m) => m.bytes));
        a.end(wire);
        // What the far side sends back: nothing, or exactly one error frame with the same code.
        const reply: Buffer[] = [];
        a.on('data', (d: Buffer) => reply.push(d));
        const ended = new Promise<void>((resolve) => a.once('close', () => resolve()));
        // The mutated stream ends (a.end), so the framed side either failed or saw the end: it must close.
        await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('FramedSocket did not close')), 5000))]);
        await ended;
        expect(errors.length).toBeLessThanOrEqual(1);
        if (errors.length === 1) {
          expect(CODES.has(errors[0]!)).toBe(true);
          codes[errors[0]!] = (codes[errors[0]!] ?? 0) + 1;
          const replied = Buffer.concat(reply);
          // A frame of an older version is refused in that version, so that its sender can read why; the error
          // frame's layout is today's (FIRST_VERSION onwards), so it decodes once the version byte is ours.
          if (replied.length > 2 && replied[2] !== PROTOCOL_VERSION) {
            expect(errors[0]).toBe('ERR_UNSUPPORTED_VERSION');
            expect(replied[2]).toBeGreaterThanOrEqual(FIRST_VERSION);
            replied[2] = PROTOCOL_VERSION;
          }
          const back = decodeChunked(replied, [], 4096);
          expect(back.msgs).toMatchObject([{ type: 'error', code: errors[0] }]);
        }
        a.destroy();
        b.destroy();
      }),
      { numRuns: scale(300, 3000) },
    );
    stats.framedSocket = { runs, codes };
  });

  it('readMessage resolves one message or rejects with a coded error for any mutated frame, never hangs', async () => {
    const codes: Record<string, number> = {};
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(mutatedFrameArb, async (m) => {
        runs++;
        const [a, b] = await socketPair();
        a.on('error', () => undefined);
        b.on('error', () => undefined);
        a.end(m.bytes);
        let code = 'message';
        try {
          await readMessage(b, { maxFrameSize: 128, timeoutMs: 5000 });
        } catch (err) {
          code = (err as TcpPunchError).code;
          expect(err).toBeInstanceOf(TcpPunchError);
          // The stream ending inside a frame is ECONNRESET; the deadline is never what stops it.
          expect([...CODES, 'ECONNRESET']).toContain(code);
        }
        codes[code] = (codes[code] ?? 0) + 1;
        a.destroy();
        b.destroy();
      }),
      { numRuns: scale(300, 3000) },
    );
    stats.readMessage = { runs, codes };
    record('fuzz-frames', 'frames', stats);
  });
});
