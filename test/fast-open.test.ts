/**
 * Relay legs with TCP Fast Open (lib/fast-open.ts) on loopback. This machine's kernel may or may not take data in
 * SYNs on the listener (net.ipv4.tcp_fastopen): either way a join must pair, refusals must carry their codes, and
 * no descriptor may leak. Whether the join really rides in the SYN is the lab's to show (test/lab/fast-open.test.ts:
 * it sets the server namespace's sysctl).
 */
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';

import { enableFastOpen, fastOpenServerState, fastOpenSocket } from '../lib/fast-open.js';
import { native } from '../lib/native.js';
import { joinRelay } from '../lib/relay/relay-client.js';
import { listenRelay, type RelayListener } from '../lib/relay/relay-server.js';
import { RelayService } from '../lib/relay/relay-service.js';
import { openFds, settledFds } from './helpers/fds.js';
import { until } from './helpers/poll.js';
import { skipNote } from './helpers/skip-note.js';

const SECRET = 'fast-open-test-secret-0123456789';
const hasIPv6 = Object.values(networkInterfaces()).some((l) => l?.some((i) => i.address === '::1'));
const listeners: RelayListener[] = [];
afterEach(async () => {
  for (const l of listeners.splice(0)) await l.close();
});

async function relay(): Promise<{ service: RelayService; server: { host: string; port: number } }> {
  const service = new RelayService({ secret: SECRET });
  const listener = await listenRelay(service, { host: '127.0.0.1' });
  listeners.push(listener);
  return { service, server: { host: '127.0.0.1', port: listener.address().port } };
}

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

describe.skipIf(!native)('relay legs with TCP Fast Open', () => {
  it('opens a Fast Open socket only towards a numeric address of the same family as the local one', () => {
    expect(fastOpenSocket({ host: 'localhost', port: 9 })).toBeUndefined();
    expect(fastOpenSocket({ host: '127.0.0.1', port: 9 }, { localAddress: '::1' })).toBeUndefined();
    const s = fastOpenSocket({ host: '127.0.0.1', port: 9 }, { localAddress: '127.0.0.1', allowHalfOpen: true });
    expect(s).toBeDefined();
    expect(s!.allowHalfOpen).toBe(true);
    s!.destroy();
  });

  it("rejects bad arguments at the addon's boundary with coded errors, and reports the OS's refusal by errno name", () => {
    const b = native as unknown as {
      socketFastOpenConnect(remote: unknown, local?: unknown): number;
      socketSetFastOpen(fd: unknown, qlen: unknown): void;
    };
    expect(() => b.socketFastOpenConnect({ host: 'example.com', port: 80 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => b.socketFastOpenConnect({ host: '127.0.0.1', port: 70000 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => b.socketFastOpenConnect('127.0.0.1:80')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => b.socketSetFastOpen(-1, 16)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => b.socketSetFastOpen(0, 'many')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    // An fd that is no socket (/dev/null): the kernel's own answer, named.
    const fd = openSync('/dev/null', 'r');
    try {
      expect(() => b.socketSetFastOpen(fd, 16)).toThrow(expect.objectContaining({ code: 'ENOTSOCK', syscall: 'setsockopt' }));
    } finally {
      closeSync(fd);
    }
  });

  it('reads the kernel setting that decides whether a listener takes data in SYNs', () => {
    expect(['on', 'off', 'unknown']).toContain(fastOpenServerState()); // the addon is loaded here
    const server = createServer();
    expect(enableFastOpen(server)).toBe(false); // not listening: no descriptor yet
  });

  it('pairs two joins and carries bytes both ways, many times over, leaving no descriptor behind', async () => {
    const { service, server } = await relay();
    const once1 = async (i: number): Promise<void> => {
      const t = service.issueTokens({ a: `a${i}`, b: `b${i}` });
      const [a, b] = await Promise.all([joinRelay({ server, token: t.a }), joinRelay({ server, token: t.b })]);
      expect([a.side, b.side, a.peer, b.peer]).toEqual(['a', 'b', `b${i}`, `a${i}`]);
      const got = once(b.socket, 'data');
      a.socket.write(`ping ${i}`);
      expect(String((await got)[0])).toBe(`ping ${i}`);
      const back = once(a.socket, 'data');
      b.socket.write(`pong ${i}`);
      expect(String((await back)[0])).toBe(`pong ${i}`);
      a.socket.destroy();
      b.socket.destroy();
    };
    // The relay's side of a session closes on the pump's thread after ours: count with no session left.
    const ended = async (): Promise<void> => void expect(await until(() => service.stats().active === 0)).toBe(true);
    await once1(-1); // the first leg may fetch a cookie: count from the second
    await ended();
    const baseline = openFds();
    for (let i = 0; i < 20; i++) await once1(i);
    await ended();
    expect(await settledFds(baseline)).toBe(baseline);
  });

  it('reports a refused relay as ECONNREFUSED naming the relay, and closes the leg, with Fast Open or without', async () => {
    const port = await closedPort();
    const baseline = openFds();
    for (const fastOpen of [true, false]) {
      const err = await joinRelay({ server: { host: '127.0.0.1', port }, token: 'tp1.x.y', timeoutMs: 5000, fastOpen }).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'TcpPunchError', code: 'ECONNREFUSED' });
      expect((err as Error).message).toMatch(/cannot reach the relay/);
    }
    expect(await settledFds(baseline)).toBe(baseline);
  });

  it('joins without Fast Open when asked, and refuses a fastOpen that is not a boolean', async () => {
    const { service, server } = await relay();
    const t = service.issueTokens({ a: 'a', b: 'b' });
    const [a, b] = await Promise.all([joinRelay({ server, token: t.a, fastOpen: false }), joinRelay({ server, token: t.b })]);
    const got = once(b.socket, 'data');
    a.socket.write('over a plain handshake');
    expect(String((await got)[0])).toBe('over a plain handshake');
    a.socket.destroy();
    b.socket.destroy();
    await expect(joinRelay({ server, token: 'x', fastOpen: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it.skipIf(!hasIPv6)('pairs over IPv6 too', skipNote('no ::1 on loopback', 'sysctl -w net.ipv6.conf.lo.disable_ipv6=0 && npx vitest run test/fast-open.test.ts'), async () => {
    const service = new RelayService({ secret: SECRET });
    const listener = await listenRelay(service, { host: '::1' });
    listeners.push(listener);
    const server = { host: '::1', port: listener.address().port };
    const t = service.issueTokens({ a: 'a6', b: 'b6' });
    const [a, b] = await Promise.all([joinRelay({ server, token: t.a }), joinRelay({ server, token: t.b, localAddress: '::1' })]);
    const got = once(a.socket, 'data');
    b.socket.write('over ::1');
    expect(String((await got)[0])).toBe('over ::1');
    expect(a.socket.remoteAddress).toBe('::1');
    a.socket.destroy();
    b.socket.destroy();
  });

  it("passes the relay's refusal code through (a bad token)", async () => {
    const { server } = await relay();
    const err = await joinRelay({ server, token: 'tp1.bm90.c2ln', timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_RELAY_TOKEN_INVALID' });
  });

  it('gives up at its deadline when the relay never answers', async () => {
    // A listener that never reads: the join is accepted by the kernel and never answered.
    const silent = createServer((s) => s.resume()).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const { port } = silent.address() as AddressInfo;
      const err = await joinRelay({ server: { host: '127.0.0.1', port }, token: 'tp1.x.y', timeoutMs: 200 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ETIMEDOUT' });
    } finally {
      silent.close();
    }
  });
});
