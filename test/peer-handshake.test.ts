import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { directMac, random } from '../lib/protocol/crypto.js';
import { encodeMessage } from '../lib/protocol/messages.js';
import type { Message } from '../lib/protocol/messages.js';
import { FramedSocket, readMessage } from '../lib/protocol/stream.js';
import { AttemptRunner, outcomeOf } from '../lib/peer/attempt.js';
import { directAuth } from '../lib/peer/handshake.js';
import type { DirectAuthParams } from '../lib/peer/handshake.js';
import type { AttemptEvent } from '../lib/peer/types.js';
import type { RendezvousServer } from '../lib/server/server.js';
import { LOOSE, peer, raw, server, settleFds, stableFdCount } from './helpers/rendezvous.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function pair(): Promise<[Socket, Socket]> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const a = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  const [b] = (await once(srv, 'connection')) as [Socket];
  await once(a, 'connect');
  srv.close();
  for (const s of [a, b]) s.on('error', () => undefined);
  cleanup.push(() => a.destroy(), () => b.destroy());
  return [a, b];
}

const base = (): Omit<DirectAuthParams, 'role'> => ({
  pairKey: Buffer.alloc(32, 1),
  coordId: Buffer.alloc(16, 2),
  attempt: 1,
  nonce: Buffer.alloc(16, 3),
  timeoutMs: 2000,
});

describe('direct-auth handshake', () => {
  it('succeeds between the paired sides and keeps the bytes that follow', async () => {
    const [a, b] = await pair();
    const p = base();
    b.write(Buffer.alloc(0));
    await Promise.all([directAuth(a, { ...p, role: 'initiator' }), directAuth(b, { ...p, role: 'responder' })]);
    a.write('after');
    const [chunk] = (await once(b, 'data')) as [Buffer];
    expect(chunk.toString()).toBe('after');
  });

  it('rejects a side with the wrong pair key, on both ends', async () => {
    const [a, b] = await pair();
    const p = base();
    const results = await Promise.allSettled([
      directAuth(a, { ...p, role: 'initiator' }),
      directAuth(b, { ...p, pairKey: Buffer.alloc(32, 9), role: 'responder' }),
    ]);
    expect(results.map((r) => (r as PromiseRejectedResult).reason?.code)).toEqual(['ERR_AUTH_FAILED', 'ERR_AUTH_FAILED']);
  });

  it('rejects a reflected MAC, a MAC replayed from another attempt, and junk', async () => {
    const p = base();
    // Reflection: the far end echoes our own frame.
    const [a, b] = await pair();
    b.on('data', (d: Buffer) => b.write(d));
    await expect(directAuth(a, { ...p, role: 'initiator' })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
    // Replay of the responder's genuine frame from attempt 1, in attempt 2.
    const [c, d] = await pair();
    const old: Message = { type: 'direct-auth', coordId: p.coordId, attempt: 1, role: 'responder', mac: directMac(p.pairKey, p.coordId, 1, 'responder', p.nonce) };
    d.write(encodeMessage(old));
    await expect(directAuth(c, { ...p, attempt: 2, role: 'initiator' })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
    // Junk and other messages.
    const [e, f] = await pair();
    f.write('SSH-2.0-OpenSSH\r\n');
    await expect(directAuth(e, { ...p, role: 'initiator' })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
    const [g, h] = await pair();
    h.write(encodeMessage({ type: 'ping', seq: 1, rttUs: 0 }));
    await expect(directAuth(g, { ...p, role: 'initiator' })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
  });

  it('times out on a silent stranger and reports a close', async () => {
    const p = base();
    const [a] = await pair();
    await expect(directAuth(a, { ...p, timeoutMs: 100, role: 'initiator' })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    const [c, d] = await pair();
    d.end();
    await expect(directAuth(c, { ...p, role: 'initiator' })).rejects.toMatchObject({ code: 'ECONNRESET' });
  });
});

/**
 * A registered peer that follows the whole protocol (observe, punch) but does not know the pair key:
 * it stands for a stranger on the punched port.
 */
async function impostor(s: RendezvousServer, id: string): Promise<void> {
  const framed = new FramedSocket(await raw(s));
  cleanup.push(() => framed.destroy());
  const env = { server: { host: '127.0.0.1', port: s.address().port }, family: 4 as const, localAddress: undefined, punch: {}, natMapping: () => 'unknown' as const,
    natFiltering: () => 'unknown' as const, warm: undefined };
  let runner: AttemptRunner | undefined;
  cleanup.push(() => runner?.dispose());
  const ready = new Promise<void>((resolve) => {
    framed.on('message', (msg: Message) => {
      switch (msg.type) {
        case 'challenge':
          return void framed.send({ type: 'auth', proof: new Uint8Array(0) });
        case 'welcome':
          return resolve();
        case 'prepare':
          runner?.dispose();
          runner = new AttemptRunner(env, msg);
          return void runner.observe().catch(() => undefined);
        case 'punch': {
          const r = runner!;
          r.punch(msg, { pairKey: random(32), role: 'responder' }).then(
            (ok) => ok.socket.destroy(),
            (err: unknown) => {
              framed.send({ type: 'result', coordId: msg.coordId, attempt: msg.attempt, outcome: outcomeOf(err), detail: '', committed: false });
              r.dispose();
            },
          );
          return;
        }
        default:
          return;
      }
    });
  });
  framed.send({ type: 'hello', id, nonce: random(16), software: 'impostor', private: [], warm: false });
  await ready;
}

describe('direct-auth end to end', () => {
  for (const reversal of [true, false]) {
    it(`a paired side without the key gets nothing and the dial fails cleanly (reversal ${reversal})`, async () => {
      const s = await server({ ...LOOSE, reversal });
      cleanup.push(() => s.close());
      const a = await peer(s, 'alice');
      cleanup.push(() => a.close());
      await impostor(s, 'mallory');
      const before = await stableFdCount();
      const events: AttemptEvent[] = [];
      a.on('attempt', (e) => events.push(e));
      await expect(a.dial('mallory', { strategy: 'direct' })).rejects.toMatchObject({ code: 'ERR_PUNCH_FAILED' });
      expect(events.map((e) => e.outcome)).toEqual(['auth-failed', 'auth-failed', 'auth-failed']);
      expect(events.map((e) => e.mode)).toEqual(reversal ? ['reverse', 'sync', 'sync'] : ['sync', 'sync', 'sync']);
      expect(await settleFds(before)).toBe(before);
    });
  }

  it('readMessage leaves the socket usable for a following reader', async () => {
    const [a, b] = await pair();
    a.write(Buffer.concat([encodeMessage({ type: 'ping', seq: 3, rttUs: 0 }), encodeMessage({ type: 'pong', seq: 4 })]));
    expect(await readMessage(b)).toEqual({ type: 'ping', seq: 3, rttUs: 0 });
    expect(await readMessage(b)).toEqual({ type: 'pong', seq: 4 });
  });
});
