/**
 * The relay service end to end on loopback: pairing, integrity, half-close, every limit reported to both peers,
 * token abuse, and no fd leak.
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { encodeFrame } from '../lib/protocol/frame.js';
import { decodeRelay, encodeRelayFrame, type RelayEnd } from '../lib/relay/frames.js';
import type { RelayLimits } from '../lib/relay/limits.js';
import { joinRelay } from '../lib/relay/relay-client.js';
import { listenRelay, type RelayListener } from '../lib/relay/relay-server.js';
import { RelayService, type RelaySessionEnd } from '../lib/relay/relay-service.js';
import type { PumpKind } from '../lib/relay/pump.js';
import type { RelayMsg } from '../lib/protocol/messages.js';
import { openFds, settledFds } from './helpers/fds.js';
import { drainHash, sendRandom } from './helpers/net.js';
import { until } from './helpers/poll.js';
import { collect, outcome, writeUntilClosed } from './helpers/relay.js';

const MB = 1024 * 1024;
const SECRET = 'relay-test-secret-0123456789abcdef';

interface Relay {
  service: RelayService;
  listener: RelayListener;
  server: { host: string; port: number };
  /** relay-end notices each peer received on its (simulated) control connection. */
  notices: Map<string, RelayEnd[]>;
  ends: RelaySessionEnd[];
  noticesFor(peer: string, n?: number): Promise<RelayEnd[]>;
}

const open: Relay[] = [];
type Accept = 'auto' | 'native' | 'node';

async function startRelay(limits: Partial<RelayLimits> = {}, pump: PumpKind = 'auto', accept: Accept = 'auto'): Promise<Relay> {
  const notices = new Map<string, RelayEnd[]>();
  const waiters: (() => void)[] = [];
  const service = new RelayService({
    secret: SECRET,
    limits,
    pump,
    notify: (peer: string, msg: RelayMsg) => {
      const end = decodeRelay(msg);
      if (end.name !== 'relay-end') throw new Error('unexpected notice');
      const { name: _, ...rest } = end;
      notices.set(peer, [...(notices.get(peer) ?? []), rest]);
      for (const w of waiters.splice(0)) w();
    },
  });
  const ends: RelaySessionEnd[] = [];
  service.on('session-end', (e) => ends.push(e));
  const listener = await listenRelay(service, { host: '127.0.0.1', accept });
  const relay: Relay = {
    service,
    listener,
    server: { host: '127.0.0.1', port: listener.address().port },
    notices,
    ends,
    async noticesFor(peer, n = 1) {
      while ((notices.get(peer)?.length ?? 0) < n) await new Promise<void>((r) => waiters.push(r));
      return notices.get(peer)!;
    },
  };
  open.push(relay);
  return relay;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.listener.close()));
});

/** Joins both sides of a fresh session; resolves both connections. */
async function joinBoth(relay: Relay, a = 'alice', b = 'bob') {
  const issued = relay.service.issueTokens({ a, b });
  const [ca, cb] = await Promise.all([
    joinRelay({ server: relay.server, token: issued.a }),
    joinRelay({ server: relay.server, token: issued.b }),
  ]);
  return { issued, ca, cb };
}

/** Resolves the error code a join attempt fails with. */
async function joinError(relay: Relay, token: string): Promise<string> {
  try {
    const c = await joinRelay({ server: relay.server, token, timeoutMs: 10_000 });
    c.socket.destroy();
    return 'paired';
  } catch (err) {
    return (err as { code: string }).code;
  }
}

describe.each<PumpKind>(['native', 'js'])('relay with the %s pump', (pump) => {
  it('pairs two joiners and relays 100 MB each way intact', async () => {
    const relay = await startRelay({ maxBytesPerSession: 0 }, pump);
    const { issued, ca, cb } = await joinBoth(relay);
    expect(ca).toMatchObject({ sessionId: issued.sessionId, side: 'a', peer: 'bob' });
    expect(cb).toMatchObject({ sessionId: issued.sessionId, side: 'b', peer: 'alice' });
    const [sentA, sentB, gotB, gotA] = await Promise.all([
      sendRandom(ca.socket, 100 * MB),
      sendRandom(cb.socket, 100 * MB),
      drainHash(cb.socket),
      drainHash(ca.socket),
    ]);
    expect(gotB).toEqual({ hash: sentA, bytes: 100 * MB });
    expect(gotA).toEqual({ hash: sentB, bytes: 100 * MB });
    const [alice] = await relay.noticesFor('alice');
    const [bob] = await relay.noticesFor('bob');
    expect(alice).toEqual({ sessionId: issued.sessionId, reason: 'eof', code: '', bytesSent: 100 * MB, bytesReceived: 100 * MB });
    expect(bob).toMatchObject({ reason: 'eof', bytesSent: 100 * MB, bytesReceived: 100 * MB });
  }, 120_000);

  it('propagates half-close through the relay', async () => {
    const relay = await startRelay({}, pump);
    const { ca, cb } = await joinBoth(relay);
    const gotB = collect(cb.socket);
    const gotA = drainHash(ca.socket);
    ca.socket.end('last words');
    expect((await gotB).data.toString()).toBe('last words');
    const sent = await sendRandom(cb.socket, 4 * MB);
    expect(await gotA).toEqual({ hash: sent, bytes: 4 * MB });
    expect((await relay.noticesFor('alice'))[0]!.reason).toBe('eof');
  });

  it('ends a session past its byte limit and tells both peers why', async () => {
    const relay = await startRelay({ maxBytesPerSession: MB }, pump);
    const { ca, cb } = await joinBoth(relay);
    expect(ca.maxBytes).toBe(MB);
    const [aOut, bOut] = [outcome(ca.socket), outcome(cb.socket)];
    void writeUntilClosed(ca.socket, 32 * MB);
    for (const peer of ['alice', 'bob']) {
      expect((await relay.noticesFor(peer))[0]).toMatchObject({ reason: 'limit-bytes', code: 'ERR_RELAY_LIMIT_BYTES' });
    }
    expect(await aOut).toMatch(/ECONNRESET|EPIPE/);
    expect(await bOut).toMatch(/ECONNRESET|end|close/);
  });

  it.each([
    ['past its duration limit', { maxDurationMs: 150 }, 'limit-duration', 'ERR_RELAY_LIMIT_DURATION'],
    ['that moves nothing for its idle limit', { idleTimeoutMs: 150 }, 'limit-idle', 'ERR_RELAY_LIMIT_IDLE'],
  ] as const)('ends a session %s and tells both peers why', async (_what, limits, reason, code) => {
    const relay = await startRelay(limits, pump);
    const { ca, cb } = await joinBoth(relay);
    const [aOut, bOut] = [outcome(ca.socket), outcome(cb.socket)];
    for (const peer of ['alice', 'bob']) {
      expect((await relay.noticesFor(peer))[0]).toMatchObject({ reason, code });
    }
    expect(await aOut).toBe('ECONNRESET');
    expect(await bOut).toBe('ECONNRESET');
  });
});

describe('relay pairing and limits', () => {
  it('delivers bytes that arrive in the same read as relay-paired', async () => {
    // A fake relay that answers the join with relay-paired and payload in one write.
    const fake = createServer((s) => {
      s.once('data', () =>
        s.write(Buffer.concat([
          encodeRelayFrame('relay-paired', { sessionId: 'sid', side: 'a', peer: 'bob', maxBytes: 0, maxDurationMs: 0 }),
          Buffer.from('first payload bytes'),
        ])),
      );
    });
    fake.listen(0, '127.0.0.1');
    await once(fake, 'listening');
    const c = await joinRelay({ server: { host: '127.0.0.1', port: (fake.address() as AddressInfo).port }, token: 'x' });
    const [data] = (await once(c.socket, 'data')) as [Buffer];
    expect(data.toString()).toBe('first payload bytes');
    c.socket.destroy();
    fake.close();
  });

  it('refuses the first side when the second does not join in time, and reports it to both', async () => {
    const relay = await startRelay({ joinTimeoutMs: 100 });
    const issued = relay.service.issueTokens({ a: 'alice', b: 'bob' });
    expect(await joinError(relay, issued.a)).toBe('ERR_RELAY_JOIN_TIMEOUT');
    expect(await joinError(relay, issued.b)).toBe('ERR_RELAY_JOIN_TIMEOUT');
    for (const peer of ['alice', 'bob']) {
      expect((await relay.noticesFor(peer))[0]).toMatchObject({ reason: 'join-timeout', code: 'ERR_RELAY_JOIN_TIMEOUT' });
    }
  });

  it('limits sessions at once, per peer and per IP, reporting each to both peers of the refused session', async () => {
    const check = async (limits: Partial<RelayLimits>, second: [string, string], code: string, local?: string) => {
      const relay = await startRelay(limits);
      const { ca, cb } = await joinBoth(relay);
      const issued = relay.service.issueTokens({ a: second[0], b: second[1] });
      const socket = connect({ host: '127.0.0.1', port: relay.server.port, localAddress: local ?? '127.0.0.1' });
      await once(socket, 'connect');
      const err = await joinRelay({ socket, token: issued.a }).then(() => 'paired', (e: { code: string }) => e.code);
      expect(err).toBe(code);
      expect(await joinError(relay, issued.b)).toBe(code);
      for (const peer of second) expect((await relay.noticesFor(peer))[0]).toMatchObject({ reason: 'rejected', code });
      ca.socket.destroy();
      cb.socket.destroy();
    };
    await check({ maxSessions: 1 }, ['carol', 'dave'], 'ERR_RELAY_LIMIT_SESSIONS', '127.0.0.2');
    await check({ maxSessionsPerPeer: 1 }, ['alice', 'carol'], 'ERR_RELAY_LIMIT_PEER', '127.0.0.2');
    await check({ maxSessionsPerIp: 2 }, ['carol', 'dave'], 'ERR_RELAY_LIMIT_IP');
  });

  it('stops every session on close() and reports stopped to both peers', async () => {
    const relay = await startRelay();
    const { ca, cb } = await joinBoth(relay);
    const [aOut, bOut] = [outcome(ca.socket), outcome(cb.socket)];
    await relay.service.close();
    expect(await aOut).toBe('ECONNRESET');
    expect(await bOut).toBe('ECONNRESET');
    for (const peer of ['alice', 'bob']) expect((await relay.noticesFor(peer))[0]).toMatchObject({ reason: 'stopped' });
  });

  it('leaks no fd over 1,000 relayed sessions', async () => {
    const relay = await startRelay({ maxSessionsPerIp: 1000 });
    const one = async (i: number) => {
      const { ca, cb } = await joinBoth(relay, `a${i}`, `b${i}`);
      const [gotA, gotB] = [collect(ca.socket), collect(cb.socket)];
      ca.socket.end('ping');
      cb.socket.end('pong');
      await Promise.all([gotA, gotB]);
      await relay.noticesFor(`a${i}`);
      for (const s of [ca.socket, cb.socket]) if (!s.closed) s.destroy();
    };
    await one(-1);
    const baseline = openFds();
    for (let batch = 0; batch < 20; batch++) await Promise.all(Array.from({ length: 50 }, (_, i) => one(batch * 50 + i)));
    expect(await settledFds(baseline)).toBe(baseline);
    expect(relay.service.stats()).toMatchObject({ pending: 0, active: 0, started: 1001 });
  });
});

// The refusals come from the relay service whoever accepted the connection: the addon (the default with the
// native pump) or a net.Server (the JS pump's, and the rendezvous server's port).
describe.each<Accept>(['auto', 'node'])('relay token abuse, accepted by %s: never an open proxy', (accept) => {
  it('refuses a connection that sends no join frame, or junk', async () => {
    const relay = await startRelay({}, 'auto', accept);
    const raw = async (bytes: Buffer): Promise<string> => {
      const s = connect(relay.server);
      await once(s, 'connect');
      s.write(bytes);
      const { data } = await collect(s);
      return data.length > 6 ? decodeError(data) : 'closed';
    };
    expect(await raw(Buffer.from('CONNECT example.com:443 HTTP/1.1\r\n\r\n'))).toBe('ERR_BAD_MAGIC');
    expect(await raw(encodeFrame(0x01, Buffer.alloc(3)))).toMatch(/ERR_/);
    expect(await joinError(relay, 'none')).toBe('ERR_RELAY_TOKEN_INVALID');
    expect(relay.service.stats()).toMatchObject({ pending: 0, active: 0, started: 0 });
  });

  it('refuses forged, expired and reused tokens', async () => {
    const relay = await startRelay({}, 'auto', accept);
    const forger = new RelayService({ secret: 'not-the-relay-secret-0123456789' });
    expect(await joinError(relay, forger.issueTokens({ a: 'alice', b: 'bob' }).a)).toBe('ERR_RELAY_TOKEN_INVALID');
    const expired = relay.service.issueTokens({ a: 'alice', b: 'bob', ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    expect(await joinError(relay, expired.a)).toBe('ERR_RELAY_TOKEN_EXPIRED');
    const { issued, ca, cb } = await joinBoth(relay);
    // The pair is relaying: a third party replaying either token gets nothing.
    expect(await joinError(relay, issued.a)).toBe('ERR_RELAY_TOKEN_REUSED');
    expect(await joinError(relay, issued.b)).toBe('ERR_RELAY_TOKEN_REUSED');
    ca.socket.destroy();
    cb.socket.destroy();
    await relay.noticesFor('alice');
    expect(await joinError(relay, issued.a)).toBe('ERR_RELAY_TOKEN_REUSED');
    expect(relay.service.stats().started).toBe(1);
  });

  it('refuses a second holder of the same side while the first waits, and mismatched sides', async () => {
    const relay = await startRelay({}, 'auto', accept);
    const tokens = relay.service.tokens;
    const issued = relay.service.issueTokens({ a: 'alice', b: 'bob' });
    const first = joinRelay({ server: relay.server, token: issued.a });
    expect(await until(() => relay.service.stats().pending === 1, 5000, 10)).toBe(true);
    // A reused token while its holder waits.
    expect(await joinError(relay, issued.a)).toBe('ERR_RELAY_TOKEN_REUSED');
    const claims = tokens.verify(issued.b);
    const exp = claims.exp;
    // Validly signed, same session, but the same side again, or naming other peers.
    const sameSide = tokens.sign({ sid: claims.sid, side: 'a', peer: 'bob', other: 'alice', exp, jti: 'x1' });
    const otherPeers = tokens.sign({ sid: claims.sid, side: 'b', peer: 'mallory', other: 'alice', exp, jti: 'x2' });
    expect(await joinError(relay, sameSide)).toBe('ERR_RELAY_TOKEN_MISMATCH');
    expect(await joinError(relay, otherPeers)).toBe('ERR_RELAY_TOKEN_MISMATCH');
    // None of that disturbed the waiting side: the real second side still pairs with it.
    const second = await joinRelay({ server: relay.server, token: issued.b });
    const a = await first;
    expect(a.peer).toBe('bob');
    // A third party with a valid token for the paired session (same session, fresh id) is refused too.
    const third = tokens.sign({ sid: claims.sid, side: 'b', peer: 'bob', other: 'alice', exp, jti: 'x3' });
    expect(await joinError(relay, third)).toBe('ERR_RELAY_TOKEN_MISMATCH');
    a.socket.destroy();
    second.socket.destroy();
  });

  it('rejects bad joinRelay arguments with coded errors and opens no socket', async () => {
    const server = { host: '127.0.0.1', port: 9 };
    const code = (o: unknown) => joinRelay(o as never).then(() => 'joined', (e: { code: string }) => e.code);
    expect(await code(null)).toBe('ERR_INVALID_ARG_TYPE');
    expect(await code({ server, token: '' })).toBe('ERR_INVALID_ARG_TYPE');
    expect(await code({ server, token: 't', localAddress: 'not-an-ip' })).toBe('ERR_INVALID_ARG_VALUE');
    expect(await code({ server, token: 't', timeoutMs: 0 })).toBe('ERR_OUT_OF_RANGE');
  });

  it('refuses a first side that sends data before it is paired', async () => {
    const relay = await startRelay({}, 'auto', accept);
    const issued = relay.service.issueTokens({ a: 'alice', b: 'bob' });
    const s = connect(relay.server);
    await once(s, 'connect');
    s.write(Buffer.concat([encodeRelayFrame('relay-join', { token: issued.a }), Buffer.from('too early')]));
    const { data } = await collect(s);
    expect(decodeError(data)).toBe('ERR_RELAY_PROTOCOL');
    expect(await joinError(relay, issued.b)).toBe('ERR_RELAY_PROTOCOL');
  });
});

function decodeError(data: Buffer): string {
  // An `error` frame: header (6 bytes), then code as a u16-prefixed string.
  if (data[3] !== 0x07) return `type 0x${data[3]?.toString(16)}`;
  const len = data.readUInt16BE(6);
  return data.subarray(8, 8 + len).toString();
}
