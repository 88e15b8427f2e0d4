/**
 * Fuzzing the tunnel handshake reader (lib/tunnel/wire.ts readFirstByte), the one parser of the tunnel protocol:
 * whatever the peer sends (any bytes, in any chunks, with pauses, then FIN, RST or nothing), it resolves with the
 * first byte and the bytes after it — and together with what the socket delivers afterwards that is exactly the
 * stream, no byte lost, duplicated or reordered — or rejects with ECONNRESET (closed before any byte) or
 * ETIMEDOUT (nothing in time), and leaves no listener behind.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { OPEN, PING, PONG, awaitOpen, readFirstByte } from '../../lib/tunnel/wire.js';
import { socketPair } from '../helpers/pair.js';
import { record, scale } from '../reliability/summary.js';

describe('fuzz: tunnel handshake reader', () => {
  it('returns the first byte and an exact remainder, or a coded error, for any chunking and ending', async () => {
    const outcomes: Record<string, number> = {};
    const runs = scale(300, 3000);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 64 }), fc.nat(3)), { maxLength: 5 }),
        fc.constantFrom('end', 'destroy', 'none'),
        async (chunks, ending) => {
          const [a, b] = await socketPair();
          a.on('error', () => undefined);
          b.on('error', () => undefined);
          const sent = Buffer.concat(chunks.map(([c]) => Buffer.from(c)));
          const reading = readFirstByte(b, 120).then(
            (v) => ({ ok: true as const, ...v }),
            (err: { code: string }) => ({ ok: false as const, code: err.code }),
          );
          for (const [c, pause] of chunks) {
            if (c.length) a.write(c);
            if (pause) await sleep(pause);
          }
          if (ending === 'end') a.end();
          else if (ending === 'destroy') a.destroy();
          const r = await reading;
          expect(b.listenerCount('readable')).toBe(0);
          if (r.ok) {
            expect(sent.length).toBeGreaterThan(0);
            expect(r.byte).toBe(sent[0]);
            // Everything after the first byte: what readFirstByte returned, then what the socket still delivers.
            const later: Buffer[] = [];
            b.on('data', (d: Buffer) => later.push(d));
            if (ending === 'none') a.end();
            await new Promise<void>((resolve) => {
              b.once('end', resolve);
              b.once('close', resolve);
            });
            expect(Buffer.concat([r.rest, ...later]).equals(sent.subarray(1))).toBe(true);
            outcomes.ok = (outcomes.ok ?? 0) + 1;
          } else {
            if (sent.length > 0 && ending !== 'destroy') throw new Error(`bytes were sent but readFirstByte failed: ${r.code}`);
            expect(['ECONNRESET', 'ETIMEDOUT']).toContain(r.code);
            if (r.code === 'ETIMEDOUT') expect(ending === 'none' && sent.length === 0).toBe(true);
            outcomes[r.code] = (outcomes[r.code] ?? 0) + 1;
          }
          a.destroy();
          b.destroy();
        },
      ),
      { numRuns: runs },
    );
    record('fuzz-tunnel', 'tunnelWire', { runs, outcomes });
  });

  it('awaitOpen answers every PING before OPEN with one PONG, and refuses any other byte or a byte after OPEN', async () => {
    const runs = scale(150, 1500);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constant(PING), fc.constant(PING), fc.constant(OPEN), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        async (bytes, chunk) => {
          const [a, b] = await socketPair();
          a.on('error', () => undefined);
          b.on('error', () => undefined);
          const pongs: number[] = [];
          a.on('data', (d: Buffer) => pongs.push(...d));
          const waiting = awaitOpen(b).then(() => 'open', (err: { code: string }) => err.code);
          for (let i = 0; i < bytes.length; i += chunk) {
            a.write(Buffer.from(bytes.slice(i, i + chunk)));
            await sleep(1);
          }
          a.end();
          const outcome = await waiting;
          const firstOther = bytes.findIndex((x) => x !== PING);
          const valid = firstOther === bytes.length - 1 && bytes[firstOther] === OPEN;
          if (valid) {
            expect(outcome).toBe('open');
          } else if (bytes[firstOther] === OPEN) {
            // Bytes after OPEN: refused if they arrive with it; once OPEN was read alone they are the caller's.
            expect(['open', 'ERR_TUNNEL_HANDSHAKE']).toContain(outcome);
          } else {
            // Closed before OPEN, or a byte out of turn: never an open tunnel.
            expect(['ECONNRESET', 'ERR_TUNNEL_HANDSHAKE']).toContain(outcome);
            if (firstOther >= 0 && bytes[firstOther] !== OPEN) expect(outcome).toBe('ERR_TUNNEL_HANDSHAKE');
          }
          await sleep(5);
          const answered = firstOther < 0 ? bytes.length : firstOther;
          expect(pongs.length).toBeGreaterThanOrEqual(valid ? answered : 0);
          expect(pongs.every((p) => p === PONG)).toBe(true);
          expect(pongs.length).toBeLessThanOrEqual(answered);
          expect(b.listenerCount('readable')).toBe(0);
          a.destroy();
          b.destroy();
        },
      ),
      { numRuns: runs },
    );
  });
});
