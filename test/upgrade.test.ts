import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpgradableStream } from '../lib/upgrade.js';
import { openFds, settledFds } from './helpers/fds.js';
import { drainHash } from './helpers/net.js';
import { socketPair } from './helpers/pair.js';

interface Side {
  stream: UpgradableStream;
  relay: Socket;
  direct: Socket;
}

async function sides(): Promise<[Side, Side]> {
  const [ra, rb] = await socketPair();
  const [da, db] = await socketPair();
  return [
    { stream: new UpgradableStream(ra), relay: ra, direct: da },
    { stream: new UpgradableStream(rb), relay: rb, direct: db },
  ];
}

/** Sends `total` random bytes, calling `at(sentSoFar)` between chunks (to trigger the upgrade mid-stream). */
async function send(stream: UpgradableStream, total: number, at?: (sent: number) => void): Promise<string> {
  const h = createHash('sha256');
  let sent = 0;
  while (sent < total) {
    const chunk = randomBytes(Math.min(16 * 1024 + Math.floor(Math.random() * 48 * 1024), total - sent));
    h.update(chunk);
    sent += chunk.length;
    if (!stream.write(chunk)) await once(stream, 'drain');
    at?.(sent);
    if (sent % 7 === 0) await sleep(0);
  }
  stream.end();
  return h.digest('hex');
}

describe('UpgradableStream', () => {
  let baseline = 0;
  beforeAll(() => {
    baseline = openFds();
  });
  afterAll(async () => {
    expect(await settledFds(baseline)).toBe(baseline);
  });

  it('moves both directions to the direct socket mid-stream with every byte in order', async () => {
    for (let round = 0; round < 5; round++) {
      const [a, b] = await sides();
      const total = 8 * 1024 * 1024;
      const ups: Promise<void>[] = [];
      const upAt = (side: Side, threshold: number) => {
        let fired = false;
        return (sent: number) => {
          if (!fired && sent >= threshold) {
            fired = true;
            ups.push(side.stream.upgrade(side.direct));
          }
        };
      };
      const [gotB, gotA, sentA, sentB] = await Promise.all([
        drainHash(b.stream),
        drainHash(a.stream),
        send(a.stream, total, upAt(a, (round + 1) * 1024 * 1024)),
        send(b.stream, total, upAt(b, (5 - round) * 1024 * 1024)),
      ]);
      await Promise.all(ups);
      expect(gotB).toEqual({ hash: sentA, bytes: total });
      expect(gotA).toEqual({ hash: sentB, bytes: total });
      expect(a.stream.path).toBe('direct');
      expect(b.stream.path).toBe('direct');
      // Some bytes went each way, on each path.
      expect(a.stream.bytesWrittenToRelay).toBeGreaterThan(0);
      expect(a.stream.bytesWrittenToRelay).toBeLessThan(total);
      expect(b.stream.bytesReadFromRelay).toBe(a.stream.bytesWrittenToRelay);
      a.stream.destroy();
      b.stream.destroy();
    }
  });

  it('carries an end of stream that happened on the relay before the upgrade', async () => {
    const [a, b] = await sides();
    a.stream.end('all via relay');
    const got = drainHash(b.stream);
    await sleep(20);
    const upgraded = Promise.all([a.stream.upgrade(a.direct), b.stream.upgrade(b.direct)]);
    b.stream.end('reply over direct');
    const [fromA, fromB] = await Promise.all([got, drainHash(a.stream), upgraded]);
    expect(fromA.bytes).toBe('all via relay'.length);
    expect(fromB.bytes).toBe('reply over direct'.length);
    a.stream.destroy();
    b.stream.destroy();
  });

  it('emits upgrade and then runs on the direct socket alone', async () => {
    const [a, b] = await sides();
    const events: string[] = [];
    a.stream.on('upgrade', () => events.push('a'));
    b.stream.on('upgrade', () => events.push('b'));
    await Promise.all([a.stream.upgrade(a.direct), b.stream.upgrade(b.direct)]);
    expect(events.sort()).toEqual(['a', 'b']);
    await once(a.relay, 'close');
    a.stream.write('after');
    const [d] = await once(b.stream, 'data');
    expect(String(d)).toBe('after');
    a.stream.destroy();
    b.stream.destroy();
  });

  it('rejects a peer that announces fewer relayed bytes than it sent', async () => {
    const [a, b] = await sides();
    a.relay.write('12345678');
    b.stream.resume();
    await sleep(20);
    const lie = Buffer.alloc(13);
    lie.writeUInt32BE(0x54505550, 0);
    lie.writeBigUInt64BE(3n, 5);
    a.direct.write(lie);
    b.stream.on('error', () => {});
    const err = await b.stream.upgrade(b.direct).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UPGRADE_PROTOCOL' });
    a.relay.destroy();
    a.direct.destroy();
    a.stream.destroy();
  });

  it('rejects a bad header', async () => {
    const [a, b] = await sides();
    a.direct.write(Buffer.from('GET / HTTP/1.1\r\n'));
    b.stream.on('error', () => {});
    const err = await b.stream.upgrade(b.direct).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UPGRADE_PROTOCOL' });
    a.stream.destroy();
    a.direct.destroy(); // never attached to a stream: nobody reads its FIN
  });

  it('fails the stream when the relay is reset before the upgrade', async () => {
    const [a, b] = await sides();
    b.stream.on('error', () => {});
    const closed = new Promise((resolve) => b.stream.once('close', resolve));
    a.stream.on('error', () => {});
    a.relay.resetAndDestroy();
    a.direct.destroy();
    b.direct.destroy();
    await closed;
    expect(b.stream.errored).toMatchObject({ code: expect.stringMatching(/ERR_RELAY_CLOSED|ECONNRESET/) });
    await expect(b.stream.upgrade(b.direct)).rejects.toMatchObject({ code: 'ERR_UPGRADE_STATE' });
    a.stream.destroy();
  });
});
