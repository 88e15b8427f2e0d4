/**
 * listenRelay's native listener (native/acceptor.h, lib/relay/native-legs.ts): joins held by the addon pair, wait
 * and are refused exactly as through a net.Server, a session may pair one of each kind, every connection ends
 * closed (no fd, no held connection left), and the addon's own calls check their arguments.
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { encodeRelayFrame } from '../lib/relay/frames.js';
import { heldStats, nativeJoinsAvailable } from '../lib/relay/native-legs.js';
import { joinRelay } from '../lib/relay/relay-client.js';
import { listenRelay } from '../lib/relay/relay-server.js';
import { RelayService } from '../lib/relay/relay-service.js';
import { native } from '../lib/native.js';
import { openFds, settledFds } from './helpers/fds.js';
import { drainHash, sendRandom } from './helpers/net.js';
import { until } from './helpers/poll.js';
import { collect } from './helpers/relay.js';

const SECRET = 'native-legs-test-secret-0123456789';
const MB = 1024 * 1024;
const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

interface RelayOptions {
  pump?: 'native' | 'js';
  accept?: 'auto' | 'native' | 'node';
  /** undefined: all addresses */
  host?: string | undefined;
  handshakeTimeoutMs?: number;
  lingerMs?: number;
}

async function relay(options: RelayOptions = {}) {
  const limits = { maxSessionsPerIp: 1000, maxSessionsPerPeer: 1000 };
  const service = new RelayService({ secret: SECRET, pump: options.pump ?? 'native', lingerMs: options.lingerMs ?? 1000, limits });
  const host = 'host' in options ? options.host : '127.0.0.1';
  const listener = await listenRelay(service, {
    ...(host === undefined ? {} : { host }),
    ...(options.accept ? { accept: options.accept } : {}),
    ...(options.handshakeTimeoutMs ? { handshakeTimeoutMs: options.handshakeTimeoutMs } : {}),
  });
  cleanup.push(() => listener.close());
  return { service, listener, server: { host: host ?? '127.0.0.1', port: listener.address().port } };
}

/** Both sides join and move `bytes` each way; the hashes must match. */
async function relayBytes(service: RelayService, serverA: { host: string; port: number }, serverB = serverA, bytes = 4 * MB) {
  const issued = service.issueTokens({ a: 'alice', b: 'bob' });
  const [ca, cb] = await Promise.all([joinRelay({ server: serverA, token: issued.a }), joinRelay({ server: serverB, token: issued.b })]);
  const [sentA, sentB, gotB, gotA] = await Promise.all([sendRandom(ca.socket, bytes), sendRandom(cb.socket, bytes), drainHash(cb.socket), drainHash(ca.socket)]);
  expect(gotB).toEqual({ hash: sentA, bytes });
  expect(gotA).toEqual({ hash: sentB, bytes });
}

function decodeError(data: Buffer): string {
  if (data[3] !== 0x07) return `type 0x${data[3]?.toString(16)}`;
  return data.subarray(8, 8 + data.readUInt16BE(6)).toString();
}

async function raw(server: { host: string; port: number }, write: (s: Socket) => void | Promise<void>): Promise<string> {
  const s = connect(server);
  await once(s, 'connect');
  await write(s);
  const { data } = await collect(s);
  return data.length > 6 ? decodeError(data) : 'closed';
}

const settledHeld = () => until(() => heldStats()?.open === 0 && heldStats()?.refused === 0, 5000, 10);

describe.skipIf(!nativeJoinsAvailable)('listenRelay with the native listener', () => {
  it('is picked for the native pump, not for the JS pump, and can be chosen either way', async () => {
    const picked = await Promise.all([relay(), relay({ pump: 'js' }), relay({ accept: 'node' }), relay({ pump: 'js', accept: 'native' })]);
    expect(picked.map((r) => r.listener.accept)).toEqual(['native', 'node', 'node', 'native']);
    expect(picked.map((r) => r.listener.server === undefined)).toEqual([true, false, false, true]);
    // A JS pump takes sockets: held joins become net.Sockets at pairing, bytes intact.
    await relayBytes(picked[3]!.service, picked[3]!.server);
    await relayBytes(picked[0]!.service, picked[0]!.server);
  });

  it('pairs a join held by the addon with one that came through Node, both ways intact', async () => {
    const { service, listener, server } = await relay();
    const node = await listenRelay(service, { host: '127.0.0.1', accept: 'node' });
    const nodeServer = { host: '127.0.0.1', port: node.address().port };
    await relayBytes(service, server, nodeServer);
    await relayBytes(service, nodeServer, server);
    expect(listener.accept).toBe('native');
    expect(service.stats()).toMatchObject({ started: 2, ended: { eof: 2 } });
    await node.close();
  });

  it('listens on both families by default', async () => {
    const { service, server } = await relay({ host: undefined });
    const port = server.port;
    await relayBytes(service, { host: '127.0.0.1', port }, { host: '::1', port }, 64 * 1024);
  });

  it('reads a join frame that arrives a byte at a time', async () => {
    const { service, server } = await relay();
    const issued = service.issueTokens({ a: 'alice', b: 'bob' });
    const frame = encodeRelayFrame('relay-join', { token: issued.a });
    const s = connect(server);
    await once(s, 'connect');
    for (const byte of frame) {
      s.write(Buffer.of(byte));
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(await until(() => service.stats().pending === 1, 5000, 5)).toBe(true);
    const got = collect(s);
    const b = await joinRelay({ server, token: issued.b });
    b.socket.end('hi');
    const { data } = await got;
    expect(data[3]).toBe(0x41); // relay-paired, then the relayed bytes
    expect(data.subarray(6 + data.readUInt16BE(4)).toString()).toBe('hi');
    const bDone = collect(b.socket);
    s.end();
    expect((await bDone).error).toBeUndefined();
  });

  it('refuses silence, junk, an early close and early data with the codes a net.Server would give', async () => {
    const { service, server } = await relay({ handshakeTimeoutMs: 200 });
    expect(await raw(server, () => {})).toBe('ETIMEDOUT');
    expect(await raw(server, (s) => void s.write('CONNECT example.com:443 HTTP/1.1\r\n\r\n'))).toBe('ERR_BAD_MAGIC');
    const issued = service.issueTokens({ a: 'alice', b: 'bob' });
    const join = encodeRelayFrame('relay-join', { token: issued.a });
    expect(await raw(server, (s) => void s.end(join.subarray(0, 10)))).toBe('closed');
    expect(await raw(server, (s) => void s.write(Buffer.concat([join, Buffer.from('early')])))).toBe('ERR_RELAY_PROTOCOL');
    expect(service.stats().rejected).toMatchObject({ ETIMEDOUT: 1, ERR_BAD_MAGIC: 1, ECONNRESET: 1, ERR_RELAY_PROTOCOL: 1 });
    expect(await settledHeld()).toBe(true);
  });

  it('ends a waiting side that leaves, and one that sends before it is paired', async () => {
    const { service, server } = await relay();
    const gone = service.issueTokens({ a: 'alice', b: 'bob' });
    const s = connect(server);
    await once(s, 'connect');
    s.write(encodeRelayFrame('relay-join', { token: gone.a }));
    expect(await until(() => service.stats().pending === 1, 5000, 5)).toBe(true);
    s.destroy();
    expect(await until(() => service.stats().ended['peer-gone'] === 1, 5000, 5)).toBe(true);
    const early = service.issueTokens({ a: 'carol', b: 'dave' });
    const t = connect(server);
    await once(t, 'connect');
    t.write(encodeRelayFrame('relay-join', { token: early.a }));
    expect(await until(() => service.stats().pending === 1, 5000, 5)).toBe(true);
    t.write('too early');
    expect(decodeError((await collect(t)).data)).toBe('ERR_RELAY_PROTOCOL');
    expect(service.stats()).toMatchObject({ pending: 0, active: 0 });
    expect(await settledHeld()).toBe(true);
  });

  it('closes a refused connection whose peer never closes once the linger ends', async () => {
    const { server } = await relay({ lingerMs: 50 });
    // Half-open allowed: this client never ends its side, so only the linger can close the relay's.
    const s = connect({ ...server, allowHalfOpen: true });
    cleanup.push(() => s.destroy());
    await once(s, 'connect');
    s.write(encodeRelayFrame('relay-join', { token: 'tp1.bad.bad' }));
    const { data } = await collect(s);
    expect(decodeError(data)).toBe('ERR_RELAY_TOKEN_INVALID');
    expect(await settledHeld()).toBe(true);
    expect(s.writable).toBe(true);
  });

  it('leaks no fd and holds nothing over 300 sessions and 100 refusals', async () => {
    const { service, server } = await relay();
    await relayBytes(service, server, server, 1);
    const baseline = openFds();
    const one = async (i: number) => {
      const issued = service.issueTokens({ a: `a${i}`, b: `b${i}` });
      const [ca, cb] = await Promise.all([joinRelay({ server, token: issued.a }), joinRelay({ server, token: issued.b })]);
      const got = Promise.all([collect(ca.socket), collect(cb.socket)]);
      ca.socket.end('ping');
      cb.socket.end('pong');
      const [a, b] = await got;
      expect([a.data.toString(), b.data.toString()]).toEqual(['pong', 'ping']);
    };
    for (let batch = 0; batch < 6; batch++) await Promise.all(Array.from({ length: 50 }, (_, i) => one(batch * 50 + i)));
    await Promise.all(Array.from({ length: 100 }, () => raw(server, (s) => void s.write(encodeRelayFrame('relay-join', { token: 'x' })))));
    expect(await until(() => service.stats().active === 0, 5000, 10)).toBe(true);
    expect(await settledHeld()).toBe(true);
    expect(await settledFds(baseline)).toBe(baseline);
    expect(service.stats()).toMatchObject({ pending: 0, active: 0, started: 301 });
  });

  it('stops accepting on close(), refusing the side still waiting', async () => {
    const { service, listener, server } = await relay();
    const issued = service.issueTokens({ a: 'alice', b: 'bob' });
    const waiting = joinRelay({ server, token: issued.a }).then(
      () => 'paired',
      (e: { code: string }) => e.code,
    );
    expect(await until(() => service.stats().pending === 1, 5000, 5)).toBe(true);
    await listener.close();
    expect(await waiting).toBe('ERR_RELAY_CLOSED');
    const s = connect(server);
    const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
    expect(heldStats()).toMatchObject({ open: 0 });
  });

  it('reports a port in use and a bad option with coded errors', async () => {
    const busy = createServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
    cleanup.push(() => new Promise((r) => busy.close(r)));
    const service = new RelayService({ secret: SECRET });
    const port = (busy.address() as AddressInfo).port;
    await expect(listenRelay(service, { host: '127.0.0.1', port, accept: 'native' })).rejects.toMatchObject({ name: 'TcpPunchError', code: 'EADDRINUSE' });
    await expect(listenRelay(service, { accept: 'fast' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(heldStats()?.listeners).toBe(0);
  });

  it("checks the addon's arguments and ignores ids it does not hold", async () => {
    await relay(); // the addon's event hook is set once a listener exists
    const b = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => b.connRefuse!('1', Buffer.alloc(1), 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => b.connRefuse!(1, 'bytes', 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => b.connRefuse!(1, Buffer.alloc(1), -1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => b.acceptListen!({ host: 'localhost', port: 0 }, 16)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(b.connRefuse!(0xfffffff0, Buffer.alloc(1), 0)).toBe(false);
    expect(b.connRelease!(0xfffffff0)).toBe(-1);
    expect(b.connDestroy!(0xfffffff0)).toBeUndefined();
    expect(b.acceptClose!(0xfffffff0)).toBeUndefined();
  });
});
