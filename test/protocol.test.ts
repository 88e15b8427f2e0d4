import { createServer, connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { TcpPunchError } from '../lib/errors.js';
import {
  FrameDecoder,
  HEADER_SIZE,
  MAX_FRAME_SIZE,
  PROTOCOL_VERSION,
  encodeFrame,
} from '../lib/protocol/frame.js';
import { SCHEMAS, decodeMessage, encodeMessage } from '../lib/protocol/messages.js';
import type { Message, SchemaName } from '../lib/protocol/messages.js';
import { FramedSocket, readMessage } from '../lib/protocol/stream.js';
import { clientProof, deriveIdKey, directMac, safeEqual, wrapPairKey } from '../lib/protocol/crypto.js';
import { anyMessage, messageArb } from './helpers/rendezvous-arbitraries.js';
import { until } from './helpers/poll.js';

const CODES = new Set([
  'ERR_BAD_MAGIC',
  'ERR_UNSUPPORTED_VERSION',
  'ERR_FRAME_TOO_LARGE',
  'ERR_UNKNOWN_TYPE',
  'ERR_MALFORMED_FRAME',
]);

/** Makes decoded values comparable with generated ones (Buffer views become plain Uint8Arrays). */
function plain(msg: Message): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(msg)) out[k] = v instanceof Uint8Array ? Uint8Array.from(v) : v;
  return out;
}

/** Feeds bytes through a decoder and decodes every frame; returns messages or the coded error. */
function decodeAll(bytes: Uint8Array, maxFrameSize?: number): { msgs: Message[]; error?: TcpPunchError } {
  const d = new FrameDecoder({ maxFrameSize });
  const msgs: Message[] = [];
  try {
    d.write(bytes);
    for (let frame = d.read(); frame; frame = d.read()) msgs.push(decodeMessage(frame));
    return { msgs };
  } catch (err) {
    if (!(err instanceof TcpPunchError)) throw err;
    return { msgs, error: err };
  }
}

function expectCoded(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TcpPunchError);
    expect((err as TcpPunchError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('frame codec', () => {
  it('round-trips every message type', () => {
    fc.assert(
      fc.property(anyMessage, (msg) => {
        const { msgs, error } = decodeAll(encodeMessage(msg), MAX_FRAME_SIZE);
        expect(error).toBeUndefined();
        expect(msgs.map(plain)).toEqual([plain(msg)]);
      }),
      { numRuns: 2000 },
    );
  });

  it('covers every schema at least once', () => {
    for (const name of Object.keys(SCHEMAS) as SchemaName[]) {
      fc.assert(
        fc.property(messageArb(name), (msg) => {
          expect(plain(decodeMessage({ type: SCHEMAS[name].type, body: encodeMessage(msg).subarray(HEADER_SIZE) }))).toEqual(plain(msg));
        }),
        { numRuns: 50 },
      );
    }
  });

  it('decodes a stream split at arbitrary points into the same messages', () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
        const wire = Buffer.concat(msgs.map(encodeMessage));
        const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const d = new FrameDecoder({ maxFrameSize: MAX_FRAME_SIZE });
        const out: Message[] = [];
        let prev = 0;
        for (const p of [...points, wire.length]) {
          d.write(wire.subarray(prev, p));
          prev = p;
          for (let f = d.read(); f; f = d.read()) out.push(decodeMessage(f));
        }
        expect(out.map(plain)).toEqual(msgs.map(plain));
        expect(d.buffered).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws anything but a coded error on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const { error } = decodeAll(bytes);
        if (error) expect(CODES.has(error.code)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws anything but a coded error on random bodies under a valid header, and is canonical', () => {
    const types = [...Object.values(SCHEMAS).map((s) => s.type), 0x00, 0x09, 0x22, 0x40, 0x4f, 0x50, 0xff];
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.uint8Array({ maxLength: 300 }), (type, body) => {
        const frame = encodeFrame(type, body);
        const { msgs, error } = decodeAll(frame);
        if (error) {
          expect(CODES.has(error.code)).toBe(true);
          return;
        }
        // Whatever decodes re-encodes to exactly the same bytes: one encoding per message.
        expect(encodeMessage(msgs[0]!).equals(frame)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('returns nothing for any strict prefix of a frame, and flags truncated bodies', () => {
    fc.assert(
      fc.property(anyMessage, fc.nat(), (msg, n) => {
        const wire = encodeMessage(msg);
        const cut = n % wire.length;
        const d = new FrameDecoder({ maxFrameSize: MAX_FRAME_SIZE });
        d.write(wire.subarray(0, cut));
        expect(d.read()).toBeUndefined();
        // The same body cut short but with a header claiming the shorter length is malformed (or still valid
        // only if the schema allows it, which the canonical check covers): never a crash.
        const body = wire.subarray(HEADER_SIZE, HEADER_SIZE + Math.max(0, cut - HEADER_SIZE));
        if (body.length < wire.length - HEADER_SIZE && !msg.type.startsWith('relay-')) {
          const r = decodeAll(encodeFrame(wire[3]!, body), MAX_FRAME_SIZE);
          expect(r.error?.code).toBe('ERR_MALFORMED_FRAME');
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects trailing bytes after the last field', () => {
    fc.assert(
      fc.property(messageArb('ping'), fc.uint8Array({ minLength: 1, maxLength: 10 }), (msg, extra) => {
        const wire = encodeMessage(msg);
        const body = Buffer.concat([wire.subarray(HEADER_SIZE), extra]);
        expectCoded(() => decodeMessage({ type: wire[3]!, body }), 'ERR_MALFORMED_FRAME');
      }),
    );
  });

  it('rejects an oversized frame from its header alone, before any body byte', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 1, max: 0xffff }), (max, extra) => {
        const len = Math.min(max + extra, 0xffff);
        if (len <= max) return;
        const head = Buffer.from([0x54, 0x50, PROTOCOL_VERSION, 0x05, len >> 8, len & 0xff]);
        const d = new FrameDecoder({ maxFrameSize: max });
        d.write(head);
        expectCoded(() => d.read(), 'ERR_FRAME_TOO_LARGE');
        expect(d.buffered).toBe(0);
        // The decoder stays failed.
        expectCoded(() => d.write(Buffer.alloc(1)), 'ERR_FRAME_TOO_LARGE');
      }),
    );
    expectCoded(() => encodeFrame(1, new Uint8Array(MAX_FRAME_SIZE + 1)), 'ERR_FRAME_TOO_LARGE');
  });

  it('rejects a wrong version and bad magic as soon as the bytes arrive', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }).filter((v) => v !== PROTOCOL_VERSION), (v) => {
        const d = new FrameDecoder();
        d.write(Buffer.from([0x54, 0x50, v]));
        expectCoded(() => d.read(), 'ERR_UNSUPPORTED_VERSION');
      }),
    );
    const d = new FrameDecoder();
    d.write(Buffer.from('G'));
    expectCoded(() => d.read(), 'ERR_BAD_MAGIC');
    const d2 = new FrameDecoder();
    d2.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expectCoded(() => d2.read(), 'ERR_BAD_MAGIC');
  });

  it('refuses to encode values outside the schema', () => {
    const bad: unknown[] = [
      { type: 'hello', id: 'has space', nonce: new Uint8Array(16), software: '' },
      { type: 'hello', id: 'x'.repeat(65), nonce: new Uint8Array(16), software: '' },
      { type: 'hello', id: 'ok', nonce: new Uint8Array(15), software: '' },
      { type: 'ping', seq: -1 },
      { type: 'ping', seq: 2 ** 32 },
      { type: 'ping', seq: 1.5 },
      { type: 'error', code: 'lower', message: '' },
      { type: 'error', code: 'ERR_X', message: '\ud800' },
      { type: 'observed', endpoint: { host: 'example.com', port: 1 } },
      { type: 'observed', endpoint: { host: '1.2.3.4', port: 0 } },
      { type: 'auth', proof: new Uint8Array(31) },
      { type: 'punch', coordId: new Uint8Array(16), attempt: 1, mode: 'bogus', route: 'public', remote: { host: '::1', port: 1 }, delayMs: 0, timeoutMs: 1 },
    ];
    for (const msg of bad) expectCoded(() => encodeMessage(msg as Message), 'ERR_MALFORMED_FRAME');
  });
});

describe('crypto helpers', () => {
  it('binds proofs to nonces, ids and roles', () => {
    const key = deriveIdKey('secret', 'alice');
    expect(safeEqual(key, deriveIdKey('secret', 'alice'))).toBe(true);
    expect(safeEqual(key, deriveIdKey('secret', 'bob'))).toBe(false);
    const n1 = Buffer.alloc(32, 1);
    const n2 = Buffer.alloc(16, 2);
    expect(safeEqual(clientProof(key, n1, n2, 'alice'), clientProof(key, Buffer.alloc(32, 3), n2, 'alice'))).toBe(false);
    const pk = Buffer.alloc(32, 7);
    const c = Buffer.alloc(16, 9);
    expect(safeEqual(directMac(pk, c, 1, 'initiator', n2), directMac(pk, c, 1, 'responder', n2))).toBe(false);
    expect(safeEqual(directMac(pk, c, 1, 'initiator', n2), directMac(pk, c, 2, 'initiator', n2))).toBe(false);
    const wrapped = wrapPairKey(key, c, pk);
    expect(wrapped.equals(pk)).toBe(false);
    expect(wrapPairKey(key, c, wrapped).equals(pk)).toBe(true);
  });
});

async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [Socket];
  await once(client, 'connect');
  server.close();
  return [client, accepted];
}

describe('socket helpers', () => {
  it('readMessage returns one message and leaves the following bytes in the socket', async () => {
    const [a, b] = await socketPair();
    a.write(Buffer.concat([encodeMessage({ type: 'ping', seq: 7, rttUs: 0 }), Buffer.from('payload')]));
    const msg = await readMessage(b, { timeoutMs: 5000 });
    expect(msg).toEqual({ type: 'ping', seq: 7, rttUs: 0 });
    b.setEncoding('utf8');
    let got = '';
    b.on('data', (d: string) => (got += d));
    a.end();
    await once(b, 'end');
    expect(got).toBe('payload');
    b.destroy();
    a.destroy();
  });

  it('readMessage rejects junk with its code and times out with ETIMEDOUT', async () => {
    const [a, b] = await socketPair();
    a.write('GET / HTTP/1.1\r\n');
    await expect(readMessage(b, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ERR_BAD_MAGIC' });
    const [c, d] = await socketPair();
    await expect(readMessage(d, { timeoutMs: 20 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    for (const s of [a, b, c, d]) s.destroy();
  });

  it('FramedSocket answers undecodable input with an error frame and closes', async () => {
    const [a, b] = await socketPair();
    const framed = new FramedSocket(b);
    const errors: string[] = [];
    framed.on('protocol-error', (e) => errors.push(e.code));
    framed.on('message', (m) => expect(m).toEqual({ type: 'ping', seq: 1, rttUs: 0 }));
    a.write(Buffer.concat([encodeMessage({ type: 'ping', seq: 1, rttUs: 0 }), Buffer.from([0x54, 0x50, 9, 0, 0, 0])]));
    const reply = await readMessage(a, { timeoutMs: 5000 });
    expect(reply).toMatchObject({ type: 'error', code: 'ERR_UNSUPPORTED_VERSION' });
    await once(framed, 'close');
    expect(errors).toEqual(['ERR_UNSUPPORTED_VERSION']);
    a.destroy();
  });

  it('FramedSocket.report() holds reports for the next write, in order; alone they go out on their timer; end() flushes them', async () => {
    const [a, b] = await socketPair();
    const framed = new FramedSocket(b);
    const writes: Buffer[] = [];
    const write = b.write.bind(b);
    b.write = ((chunk: Buffer) => (writes.push(chunk), write(chunk))) as typeof b.write;
    const got: Message[] = [];
    const far = new FramedSocket(a);
    far.on('message', (m) => got.push(m));
    const release = (n: number): Message => ({ type: 'release', coordId: Buffer.alloc(16, n) });
    const ping = { type: 'ping', seq: 9, rttUs: 0 } as const;
    expect(framed.report(release(1))).toBe(true);
    expect(framed.report(release(2))).toBe(true);
    expect(writes).toHaveLength(0); // held
    framed.send(ping);
    expect(writes).toHaveLength(1); // the reports went with the message, in one write
    expect(decodeAll(writes[0]!).msgs.map((m) => m.type)).toEqual(['release', 'release', 'ping']);
    framed.report(release(3)); // alone: its timer sends it
    expect(await until(() => got.length === 4)).toBe(true);
    expect(writes).toHaveLength(2);
    framed.report(release(4));
    framed.end();
    await once(far, 'close');
    expect(got.map((m) => (m.type === 'release' ? m.coordId[0] : m.type))).toEqual([1, 2, 'ping', 3, 4]);
    expect(framed.report(release(5))).toBe(false); // closing: nothing is queued
    b.destroy();
  });

  it('FramedSocket.flow() switches to data events mid-stream: every message once, in order, errors as before', async () => {
    const [a, b] = await socketPair();
    const framed = new FramedSocket(b);
    const seqs: number[] = [];
    const errors: string[] = [];
    framed.on('protocol-error', (e) => errors.push(e.code));
    framed.on('message', (m) => {
      if (m.type === 'ping') seqs.push(m.seq);
      if (m.type === 'ping' && m.seq === 1) framed.flow(); // as the server does on `hello`, inside the first message
    });
    const ping = (seq: number): Buffer => encodeMessage({ type: 'ping', seq, rttUs: 0 });
    a.write(Buffer.concat([ping(1), ping(2), ping(3).subarray(0, 4)]));
    await new Promise((r) => setTimeout(r, 20));
    a.write(Buffer.concat([ping(3).subarray(4), ping(4)]));
    await new Promise((r) => setTimeout(r, 20));
    expect(seqs).toEqual([1, 2, 3, 4]);
    a.write(Buffer.from([0x54, 0x50, 9, 0, 0, 0]));
    const reply = await readMessage(a, { timeoutMs: 5000 });
    expect(reply).toMatchObject({ type: 'error', code: 'ERR_UNSUPPORTED_VERSION' });
    await once(framed, 'close');
    expect(errors).toEqual(['ERR_UNSUPPORTED_VERSION']);
    a.destroy();
  });
});
