/**
 * The relay pump contract, run against every implementation: the native pump with splice, the native pump
 * copying through buffers, and the pure-JS pump.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { jsPump } from '../lib/relay/pump-js.js';
import { nativePump, type NativePumpOptions } from '../lib/relay/pump-native.js';
import { type Pump, type PumpOptions, type PumpSession, checkPumpOptions } from '../lib/relay/pump-types.js';
import { openFds, settledFds } from './helpers/fds.js';
import { drainHash, sendRandom } from './helpers/net.js';
import { Acceptor, collect, outcome, writeUntilClosed } from './helpers/relay.js';

const MB = 1024 * 1024;

interface Variant {
  name: string;
  pump: Pump;
  extra: NativePumpOptions;
}

const variants: Variant[] = [{ name: 'js', pump: jsPump, extra: {} }];
if (nativePump) {
  variants.unshift(
    { name: 'native (splice)', pump: nativePump, extra: {} },
    { name: 'native (copy)', pump: nativePump, extra: { splice: false } },
  );
}

it('the native pump is available on this platform', () => {
  expect(nativePump).toBeDefined();
});

describe.each(variants)('$name pump', ({ pump, extra }) => {
  let acceptor: Acceptor;

  beforeAll(async () => {
    acceptor = await new Acceptor().listen();
  });
  afterAll(async () => {
    await acceptor.close();
  });

  /** Two clients whose server ends are relayed to each other. */
  async function relayed(options: PumpOptions = {}): Promise<{ a: Socket; b: Socket; session: PumpSession }> {
    const pa = await acceptor.pair();
    const pb = await acceptor.pair();
    const session = pump.start(pa.server, pb.server, { ...extra, ...options });
    return { a: pa.client, b: pb.client, session };
  }

  it('relays 100 MB each way at once, byte for byte', async () => {
    const { a, b, session } = await relayed();
    const size = 100 * MB;
    const [sentA, sentB, gotB, gotA] = await Promise.all([
      sendRandom(a, size),
      sendRandom(b, size),
      drainHash(b),
      drainHash(a),
    ]);
    expect(gotB).toEqual({ hash: sentA, bytes: size });
    expect(gotA).toEqual({ hash: sentB, bytes: size });
    const result = await session.done;
    expect(result).toMatchObject({ reason: 'eof', bytesAToB: size, bytesBToA: size });
  });

  it('writes the heads first and does not count them', async () => {
    const { a, b, session } = await relayed({ headA: Buffer.from('to-a:'), headB: Buffer.from('to-b:') });
    const [gotA, gotB] = [collect(a), collect(b)];
    a.end('from a');
    b.end('from b');
    expect((await gotA).data.toString()).toBe('to-a:from b');
    expect((await gotB).data.toString()).toBe('to-b:from a');
    expect(await session.done).toMatchObject({ reason: 'eof', bytesAToB: 6, bytesBToA: 6 });
  });

  it('propagates a half-close: A ends, B keeps sending and A receives it all', async () => {
    const { a, b, session } = await relayed();
    const gotB = collect(b);
    const gotA = drainHash(a);
    a.end('only this');
    // B has seen A's EOF before it starts sending.
    expect((await gotB).data.toString()).toBe('only this');
    const sent = await sendRandom(b, 8 * MB);
    expect(await gotA).toEqual({ hash: sent, bytes: 8 * MB });
    expect(await session.done).toMatchObject({ reason: 'eof', bytesAToB: 9, bytesBToA: 8 * MB });
  });

  it('ends with reason reset when a peer resets mid-transfer, and resets the other', async () => {
    const { a, b, session } = await relayed();
    const aOutcome = outcome(a);
    const writing = writeUntilClosed(a);
    await once(b, 'data');
    b.resetAndDestroy();
    const result = await session.done;
    expect(result.reason).toBe('reset');
    expect(result.side).toBe('b');
    expect(['ECONNRESET', 'EPIPE']).toContain(result.error);
    expect(await aOutcome).toMatch(/ECONNRESET|EPIPE/);
    await writing;
  });

  it('ends with limit-bytes once more than maxBytes are offered, and resets both peers', async () => {
    const { a, b, session } = await relayed({ maxBytes: MB });
    const [aOut, bOut] = [outcome(a), outcome(b)];
    void writeUntilClosed(a, 16 * MB);
    const result = await session.done;
    expect(result.reason).toBe('limit-bytes');
    expect(result.bytesAToB + result.bytesBToA).toBeLessThanOrEqual(MB);
    expect(await aOut).toMatch(/ECONNRESET|EPIPE/);
    // B may see 'end': see outcome(). The relay service reports the reason to both peers out of band.
    expect(await bOut).toMatch(/ECONNRESET|end|close/);
  });

  it('counts both directions against maxBytes, and a session that ends exactly on it is not cut', async () => {
    const { a, b, session } = await relayed({ maxBytes: 2000 });
    const [gotA, gotB] = [collect(a), collect(b)];
    a.end(Buffer.alloc(1000, 1));
    b.end(Buffer.alloc(1000, 2));
    expect((await gotA).data.length).toBe(1000);
    expect((await gotB).data.length).toBe(1000);
    expect(await session.done).toMatchObject({ reason: 'eof', bytesAToB: 1000, bytesBToA: 1000 });
  });

  it('ends with limit-duration when the session outlives maxDurationMs', async () => {
    const { a, b, session } = await relayed({ maxDurationMs: 100 });
    const [aOut, bOut] = [outcome(a), outcome(b)];
    const result = await session.done;
    expect(result.reason).toBe('limit-duration');
    expect(await aOut).toMatch(/ECONNRESET/);
    expect(await bOut).toMatch(/ECONNRESET/);
  });

  it('ends with limit-idle once no byte moves for idleTimeoutMs, and not while bytes keep moving', async () => {
    const { a, b, session } = await relayed({ idleTimeoutMs: 2000 });
    const [aOut, bOut] = [outcome(a), outcome(b)];
    // 3 s of small writes every 50 ms, both ways: longer than the idle limit, never idle for long.
    let gotA = 0;
    let gotB = 0;
    a.on('data', (d: Buffer) => (gotA += d.length));
    b.on('data', (d: Buffer) => (gotB += d.length));
    for (let i = 0; i < 60; i++) {
      a.write('ab');
      b.write('ba');
      await new Promise((r) => setTimeout(r, 50));
    }
    const result = await session.done; // then nothing moves: the idle limit ends it
    expect(result).toMatchObject({ reason: 'limit-idle', bytesAToB: 120, bytesBToA: 120 });
    expect([gotA, gotB]).toEqual([120, 120]);
    expect(await aOut).toMatch(/ECONNRESET/);
    expect(await bOut).toMatch(/ECONNRESET/);
  });

  it('ends with the reason given to stop()', async () => {
    const { a, b, session } = await relayed();
    const [aOut, bOut] = [outcome(a), outcome(b)];
    a.write('x');
    await once(b, 'data');
    session.stop();
    session.stop('limit-bytes'); // a second stop changes nothing
    expect((await session.done).reason).toBe('stopped');
    expect(await aOut).toMatch(/ECONNRESET/);
    expect(await bOut).toMatch(/ECONNRESET/);
  });

  it('reports the end once to onEnd, with the result done resolves to, also when done is asked for late', async () => {
    const ends: unknown[] = [];
    const { a, b, session } = await relayed({ onEnd: (r) => ends.push(r) });
    a.end('ab');
    b.end('c');
    a.resume();
    b.resume();
    while (ends.length === 0) await new Promise((r) => setTimeout(r, 5));
    const result = await session.done;
    expect(ends).toEqual([result]);
    expect(result).toMatchObject({ reason: 'eof', bytesAToB: 2, bytesBToA: 1 });
    expect(() => checkPumpOptions({ onEnd: 'no' as never })).toThrow(TypeError);
  });

  it('leaks no fd over 2,000 short sessions', async () => {
    const one = async (): Promise<void> => {
      const { a, b, session } = await relayed();
      const [gotA, gotB] = [collect(a), collect(b)];
      a.end('ping');
      await once(b, 'data');
      b.end('pong');
      await Promise.all([gotA, gotB, session.done]);
      a.destroy();
      b.destroy();
      await Promise.all([a.closed ? undefined : once(a, 'close'), b.closed ? undefined : once(b, 'close')]);
    };
    await one(); // warm up: the native engine's thread and loop fds exist from here on
    const baseline = openFds();
    for (let batch = 0; batch < 20; batch++) await Promise.all(Array.from({ length: 100 }, one));
    expect(await settledFds(baseline)).toBe(baseline);
    expect(pump.stats()).toMatchObject({ sessions: 0, pipesInUse: 0, buffersInUse: 0 });
  });

  it('refuses sockets with bytes already read into JS, leaving them untouched', async () => {
    const pa = await acceptor.pair();
    const pb = await acceptor.pair();
    pa.client.write('early');
    await once(pa.server, 'readable');
    expect(() => pump.start(pa.server, pb.server, extra)).toThrow(expect.objectContaining({ code: 'ERR_PUMP_BUFFERED' }));
    expect(pa.server.destroyed).toBe(false);
    for (const s of [pa.client, pa.server, pb.client, pb.server]) s.destroy();
  });
});
