/**
 * The library without its addon (TCP_PUNCH_ADDON naming a build that does not exist, as on a machine with neither
 * a matching prebuild nor a compiler): it loads; the server, the relay with the JS pump, the protocol and the CLI's
 * `serve` work; punching, reusable ports, dials and the native pump fail with ERR_NATIVE_UNAVAILABLE.
 */
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { runCli } from './helpers/cli.js';
import { until } from './helpers/poll.js';

const MISSING = '/nonexistent/tcp_punch.node';
// This file's fork loads the library for the first time here, after the variable is set.
process.env.TCP_PUNCH_ADDON = MISSING;
const lib = await import('../lib/index.js');
const { native, nativeLoadError } = await import('../lib/native.js');
const fastOpen = await import('../lib/fast-open.js');

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const unavailable = (what: string) =>
  expect.objectContaining({
    name: 'TcpPunchError',
    code: 'ERR_NATIVE_UNAVAILABLE',
    message: expect.stringMatching(new RegExp(`^${what.replace(/[()]/g, '\\$&')} needs the tcp-punch native addon, which did not load from ${MISSING} .*npm rebuild tcp-punch`)),
    cause: nativeLoadError,
  });

async function peers(port: number) {
  const a = await lib.Peer.connect({ server: `127.0.0.1:${port}`, id: 'alice' });
  const b = await lib.Peer.connect({ server: `127.0.0.1:${port}`, id: 'bob' });
  cleanup.push(() => a.close(), () => b.close());
  return { a, b };
}

describe('without the addon', () => {
  it('loads, and says why the addon is missing', () => {
    expect(native).toBeUndefined();
    expect(nativeLoadError).toBeInstanceOf(Error);
    expect(lib.nativePump).toBeUndefined();
    // Relay legs connect as usual (the relayed-stream test below joins that way); listeners never ask for Fast Open.
    expect(fastOpen.fastOpenSocket({ host: '127.0.0.1', port: 9 })).toBeUndefined();
    expect(fastOpen.fastOpenServerState()).toBe('unavailable');
  });

  it('punch(), bindReusable() and the native pump throw ERR_NATIVE_UNAVAILABLE', async () => {
    await expect(lib.punch({ remote: { host: '127.0.0.1', port: 9 } })).rejects.toEqual(unavailable('punch()'));
    await expect(lib.bindReusable()).rejects.toEqual(unavailable('bindReusable()'));
    expect(() => lib.choosePump('native')).toThrow(unavailable('the native relay pump'));
    const { configureNativePump } = await import('../lib/relay/pump-native.js');
    expect(() => configureNativePump({ maxPipes: 1 })).toThrow(unavailable('the native relay pump'));
  });

  it("the relay's 'auto' pump is the JS one, and listenRelay accepts through Node", async () => {
    expect(lib.choosePump('auto')).toBe(lib.jsPump);
    expect(lib.choosePump()).toBe(lib.jsPump);
    const service = new lib.RelayService({ secret: 'no-addon-relay-secret-0123456789' });
    const listener = await lib.listenRelay(service, { host: '127.0.0.1' });
    cleanup.push(() => listener.close());
    expect(listener.accept).toBe('node');
    expect(listener.server).toBeDefined();
    await expect(lib.listenRelay(service, { host: '127.0.0.1', accept: 'native' })).rejects.toEqual(
      unavailable('listenRelay({ accept: "native" })'),
    );
  });

  it('a direct dial fails with the coded error; direct-first falls back to the relay', async () => {
    const server = await lib.startServer({ host: '127.0.0.1', port: 0 });
    cleanup.push(() => server.close());
    const { a, b } = await peers(server.address().port);
    b.on('connection', (s) => cleanup.push(() => s.destroy()));
    await expect(a.dial('bob', { strategy: 'direct' })).rejects.toEqual(unavailable('a direct dial (hole punching)'));
    const r = await a.dial('bob');
    cleanup.push(() => r.socket.destroy());
    expect(r.path).toBe('relay');
  });

  it('a relayed stream through the JS pump carries bytes both ways', async () => {
    const server = await lib.startServer({ host: '127.0.0.1', port: 0 });
    cleanup.push(() => server.close());
    const { a, b } = await peers(server.address().port);
    const accepted: Socket[] = [];
    b.on('connection', (s) => accepted.push((s as Socket).on('error', () => undefined)));
    const r = await a.dial('bob', { strategy: 'relay' });
    r.socket.on('error', () => undefined);
    cleanup.push(() => r.socket.destroy(), () => accepted[0]?.destroy());
    expect(r.path).toBe('relay');
    expect(await until(() => accepted.length === 1)).toBe(true);
    const data = randomBytes(1 << 20);
    const got = collect(accepted[0]!);
    r.socket.end(data);
    expect(await got).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('the CLI serves and answers', async () => {
    const serve = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', '0', '--no-probe'], { TCP_PUNCH_ADDON: MISSING });
    cleanup.push(() => serve.stop());
    const { port } = (await serve.waitFor('listening')) as { port: number };
    const { a, b } = await peers(port);
    expect(a.id).toBe('alice');
    expect(b.id).toBe('bob');
  });
});

function collect(s: Socket): Promise<string> {
  const h = createHash('sha256');
  s.on('data', (d: Buffer) => h.update(d));
  return once(s, 'end').then(() => h.digest('hex'));
}
