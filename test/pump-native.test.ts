/**
 * What only the native pump has: the carrier pool (idle sessions hold none, a starved pool still delivers every
 * byte), the addon's argument checks, and teardown of an environment with sessions running.
 */
import { once } from 'node:events';
import { openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { configureNativePump, nativePump, nativePumpBinding } from '../lib/relay/pump-native.js';
import type { Pump } from '../lib/relay/pump-types.js';
import { openFds, settledFds } from './helpers/fds.js';
import { drainHash, sendRandom } from './helpers/net.js';
import { until } from './helpers/poll.js';
import { skipNote } from './helpers/skip-note.js';
import { Acceptor, outcome } from './helpers/relay.js';


const MB = 1024 * 1024;

describe.runIf(nativePump !== undefined)('native pump', skipNote('the addon did not load', 'npm rebuild tcp-punch (needs make, g++, python3), then npx vitest run test/pump-native.test.ts'), () => {
  const pump = nativePump as Pump;
  let acceptor: Acceptor;

  beforeAll(async () => {
    acceptor = await new Acceptor().listen();
    // Warm up: the engine's thread, loop and wakeup fds exist from the first session on, and stay.
    const { a, b, session } = await relayed();
    a.end();
    b.end();
    a.resume();
    b.resume();
    await session.done;
    a.destroy();
    b.destroy();
  });
  afterAll(async () => {
    await acceptor.close();
  });

  async function relayed(): Promise<{ a: Socket; b: Socket; session: ReturnType<Pump['start']> }> {
    const pa = await acceptor.pair();
    const pb = await acceptor.pair();
    return { a: pa.client, b: pb.client, session: pump.start(pa.server, pb.server) };
  }

  it('holds no pipe or buffer for idle sessions', async () => {
    const baseline = openFds();
    const sessions = [];
    for (let i = 0; i < 10; i++) sessions.push(...(await Promise.all(Array.from({ length: 100 }, relayed))));
    // One byte through each, so every session has borrowed a carrier at least once.
    await Promise.all(sessions.map(async ({ a, b }) => {
      a.write('x');
      await once(b, 'data');
    }));
    expect(pump.stats()).toMatchObject({ sessions: 1000, pipesInUse: 0, buffersInUse: 0, waiting: 0 });
    for (const { a, b } of sessions) for (const s of [a, b]) s.on('error', () => {});
    for (const s of sessions) s.session.stop();
    await Promise.all(sessions.map((s) => s.session.done));
    for (const { a, b } of sessions) {
      a.destroy();
      b.destroy();
    }
    expect(await settledFds(baseline)).toBe(baseline);
    expect(pump.stats()).toMatchObject({ sessions: 0, pipesIdle: 0, buffersIdle: 0 });
  });

  it('delivers every byte when the pool runs dry', async () => {
    configureNativePump({ maxPipes: 2, maxBuffers: 2, maxIdle: 0 });
    try {
      const size = 4 * MB;
      const runs = await Promise.all(Array.from({ length: 16 }, async () => {
        const { a, b, session } = await relayed();
        const [sentA, sentB, gotB, gotA] = await Promise.all([sendRandom(a, size), sendRandom(b, size), drainHash(b), drainHash(a)]);
        return { ok: gotB.hash === sentA && gotA.hash === sentB, result: await session.done };
      }));
      for (const r of runs) {
        expect(r.ok).toBe(true);
        expect(r.result).toMatchObject({ reason: 'eof', bytesAToB: size, bytesBToA: size });
      }
      expect(pump.stats()).toMatchObject({ waiting: 0, pipesInUse: 0, buffersInUse: 0 });
    } finally {
      configureNativePump({ maxPipes: 64, maxBuffers: 256, maxIdle: 16 });
    }
  });

  it('keeps other sessions moving while peers that stop reading hold every pipe and buffer', async () => {
    configureNativePump({ maxPipes: 1, maxBuffers: 1, maxIdle: 0 });
    const stalled: Awaited<ReturnType<typeof relayed>>[] = [];
    try {
      // Two sessions whose receivers never read: each direction fills its receiver and keeps a carrier full.
      for (let i = 0; i < 2; i++) {
        const r = await relayed();
        r.b.pause();
        r.a.on('error', () => {});
        r.b.on('error', () => {});
        r.a.write(Buffer.alloc(32 * MB, i));
        stalled.push(r);
      }
      for (let i = 0; i < 500 && pump.stats().pipesInUse + pump.stats().buffersInUse < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(pump.stats()).toMatchObject({ pipesInUse: 1, buffersInUse: 1 });
      // A third session still relays, intact, both ways.
      const size = 8 * MB;
      const { a, b, session } = await relayed();
      const [sentA, sentB, gotB, gotA] = await Promise.all([sendRandom(a, size), sendRandom(b, size), drainHash(b), drainHash(a)]);
      expect(gotB).toEqual({ hash: sentA, bytes: size });
      expect(gotA).toEqual({ hash: sentB, bytes: size });
      expect(await session.done).toMatchObject({ reason: 'eof', bytesAToB: size, bytesBToA: size });
      expect(pump.stats().waiting).toBe(0);
    } finally {
      for (const r of stalled) {
        r.a.destroy();
        r.b.destroy();
      }
      await Promise.all(stalled.map((r) => r.session.done));
      configureNativePump({ maxPipes: 64, maxBuffers: 256, maxIdle: 16 });
    }
  });

  it('makes progress with a single buffer shared by every direction', async () => {
    configureNativePump({ maxPipes: 0, maxBuffers: 1, maxIdle: 0 });
    try {
      const size = 16 * MB;
      const runs = await Promise.all(Array.from({ length: 4 }, async () => {
        const { a, b, session } = await relayed();
        const [sentA, sentB, gotB, gotA] = await Promise.all([sendRandom(a, size), sendRandom(b, size), drainHash(b), drainHash(a)]);
        return { ok: gotB.hash === sentA && gotA.hash === sentB, result: await session.done };
      }));
      for (const r of runs) expect(r).toMatchObject({ ok: true, result: { reason: 'eof', bytesAToB: size, bytesBToA: size } });
    } finally {
      configureNativePump({ maxPipes: 64, maxBuffers: 256, maxIdle: 16 });
    }
  });

  it('checks its arguments and leaks nothing when it refuses', async () => {
    const binding = nativePumpBinding!;
    const { client, server } = await acceptor.pair();
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const baseline = openFds();
    const devnull = openSync('/dev/null', 'r');
    expect(() => binding.pumpStart(fd, devnull, {})).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
    closeSync(devnull);
    expect(() => binding.pumpStart(fd, fd, {})).toThrow(RangeError);
    expect(() => binding.pumpStart(-1, fd, {})).toThrow(RangeError);
    expect(() => binding.pumpStart(fd, 1e9, {})).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => binding.pumpStart(fd, fd + 1, { headA: Buffer.alloc(70_000) })).toThrow(RangeError);
    expect(() => binding.pumpStart(fd, fd + 1, { maxBytes: -1 })).toThrow(RangeError);
    expect(() => binding.pumpStart(fd, fd + 1, { idleTimeoutMs: -1 })).toThrow(RangeError);
    expect(() => binding.pumpStop(123456, 'whatever' as never)).toThrow(RangeError);
    binding.pumpStop(123456); // unknown id: nothing to do
    expect(openFds()).toBe(baseline);
    client.destroy();
    server.destroy();
  });

  it('stops its sessions and frees everything when a worker running them exits', async () => {
    const peers: Socket[] = [];
    const server = createServer((s) => peers.push(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseline = openFds();
    const root = join(import.meta.dirname, '..');
    const worker = new Worker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      const net = require('node:net');
      const { once } = require('node:events');
      const b = workerData.addon ? require(workerData.addon) : require('node-gyp-build')(workerData.root);
      b.pumpOnDone(() => {});
      (async () => {
        for (let i = 0; i < 20; i++) {
          const x = net.connect(workerData.port, '127.0.0.1');
          const y = net.connect(workerData.port, '127.0.0.1');
          await Promise.all([once(x, 'connect'), once(y, 'connect')]);
          b.pumpStart(x._handle.fd, y._handle.fd, {});
          x.destroy();
          y.destroy();
        }
        parentPort.postMessage('ready');
      })();
      `,
      { eval: true, workerData: { port: (server.address() as AddressInfo).port, root, addon: process.env.TCP_PUNCH_ADDON } },
    );
    const [msg] = await once(worker, 'message');
    expect(msg).toBe('ready');
    expect(await until(() => peers.length === 40, 5000, 10)).toBe(true);
    // The worker's pump relays between pairs of our peers.
    peers[0]!.write('through the worker');
    const [data] = (await once(peers[1]!, 'data')) as [Buffer];
    expect(data.toString()).toBe('through the worker');
    const outcomes = peers.map(outcome);
    await worker.terminate();
    for (const o of await Promise.all(outcomes)) expect(o).toBe('ECONNRESET');
    expect(await settledFds(baseline)).toBe(baseline);
    server.close();
  });
});
