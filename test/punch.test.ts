import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindReusable, punch, punchDetailed, type PunchResult, type ReusablePort } from '../lib/index.js';
import { openFds, settledFds } from './helpers/fds.js';
import { skipNote } from './helpers/skip-note.js';
import { closeServer, destroyAll, drainHash, listen, portOf, sendRandom } from './helpers/net.js';

const LOCAL = '127.0.0.1';

/** Every group checks that it leaves the process with exactly the fds it found. */
function noFdLeak(): void {
  let baseline = 0;
  beforeAll(() => {
    baseline = openFds();
  });
  afterAll(async () => {
    expect(await settledFds(baseline)).toBe(baseline);
  });
}

/** Starts two punches towards each other at the same moment and checks they are the two ends of one connection. */
async function punchPair(a: ReusablePort, b: ReusablePort, host = LOCAL): Promise<[PunchResult, PunchResult]> {
  const [x, y] = await Promise.all([
    punchDetailed({ port: a, remote: { host, port: b.port } }),
    punchDetailed({ port: b, remote: { host, port: a.port } }),
  ]);
  expect(x.socket.localPort).toBe(a.port);
  expect(y.socket.localPort).toBe(b.port);
  expect(x.socket.remotePort).toBe(b.port);
  expect(y.socket.remotePort).toBe(a.port);
  expect([x.via, y.via].sort()).toEqual(['accept', 'connect']);
  return [x, y];
}

async function exchange(x: Socket, y: Socket, bytes: number): Promise<void> {
  // Whichever side finishes first half-closes; without allowHalfOpen its FIN would end the other side's writing.
  x.allowHalfOpen = y.allowHalfOpen = true;
  const [gotY, gotX, sentX, sentY] = await Promise.all([drainHash(y), drainHash(x), sendRandom(x, bytes), sendRandom(y, bytes)]);
  expect(gotY).toEqual({ hash: sentX, bytes });
  expect(gotX).toEqual({ hash: sentY, bytes });
}

describe('two punches on loopback', () => {
  noFdLeak();

  it('meet in one connection that carries bytes both ways', async () => {
    const a = await bindReusable({ address: LOCAL });
    const b = await bindReusable({ address: LOCAL });
    const [x, y] = await punchPair(a, b);
    expect(x.attempts).toBeGreaterThanOrEqual(1);
    expect(x.local).toEqual({ host: LOCAL, port: a.port });
    expect(x.remote).toEqual({ host: LOCAL, port: b.port });
    await exchange(x.socket, y.socket, 4 * 1024 * 1024);
    await destroyAll(x.socket, y.socket);
    a.close();
    b.close();
  });

  it('keep receiving after their own end with allowHalfOpen, and end both ways without it', async () => {
    const run = async (allowHalfOpen: boolean) => {
      const a = await bindReusable({ address: LOCAL });
      const b = await bindReusable({ address: LOCAL });
      const [x, y] = await Promise.all([
        punchDetailed({ port: a, remote: { host: LOCAL, port: b.port }, allowHalfOpen }),
        punchDetailed({ port: b, remote: { host: LOCAL, port: a.port }, allowHalfOpen }),
      ]);
      expect(x.socket.allowHalfOpen).toBe(allowHalfOpen);
      const atY = drainHash(y.socket);
      x.socket.end('done');
      expect((await atY).bytes).toBe(4);
      let result: string;
      if (allowHalfOpen) {
        // y's writing side stays open: its reply still reaches x.
        const reply = once(x.socket, 'data');
        y.socket.end('reply');
        result = String((await reply)[0]);
      } else {
        // Node ends y's writing side itself: x sees the end without y ever calling end().
        await once(x.socket, 'end');
        result = 'ended';
      }
      await destroyAll(x.socket, y.socket);
      a.close();
      b.close();
      return result;
    };
    expect(await run(true)).toBe('reply');
    expect(await run(false)).toBe('ended');
  });

  it('succeed 200 times in a row', async () => {
    for (let i = 0; i < 200; i++) {
      const a = await bindReusable({ address: LOCAL });
      const b = await bindReusable({ address: LOCAL });
      const [x, y] = await punchPair(a, b);
      x.socket.end(`ping ${i}`);
      const [data] = await once(y.socket, 'data');
      expect(String(data)).toBe(`ping ${i}`);
      await destroyAll(x.socket, y.socket);
      a.close();
      b.close();
    }
  });

  it('run 200 pairs (400 punches) at once', async () => {
    const pairs = await Promise.all(
      Array.from({ length: 200 }, async () => [await bindReusable({ address: LOCAL }), await bindReusable({ address: LOCAL })] as const),
    );
    const results = await Promise.all(pairs.map(([a, b]) => punchPair(a, b)));
    await Promise.all(results.map(([x, y]) => exchange(x.socket, y.socket, 1024)));
    await Promise.all(results.map(([x, y]) => destroyAll(x.socket, y.socket)));
    for (const [a, b] of pairs) {
      a.close();
      b.close();
    }
  });

  it('work from plain port numbers without a held port', async () => {
    // Reserve two free ports, release them, then punch from those numbers.
    const ra = await bindReusable({ address: LOCAL, listen: false });
    const rb = await bindReusable({ address: LOCAL, listen: false });
    const [pa, pb] = [ra.port, rb.port];
    ra.close();
    rb.close();
    const [x, y] = await Promise.all([
      punchDetailed({ localPort: pa, localAddress: LOCAL, remote: { host: LOCAL, port: pb } }),
      punchDetailed({ localPort: pb, localAddress: LOCAL, remote: { host: LOCAL, port: pa } }),
    ]);
    expect(x.socket.localPort).toBe(pa);
    expect(y.socket.remotePort).toBe(pa);
    await exchange(x.socket, y.socket, 64 * 1024);
    await destroyAll(x.socket, y.socket);
  });

  it('resolve host names and pick the matching address family', async () => {
    const a = await bindReusable({ address: LOCAL });
    const b = await bindReusable({ address: LOCAL });
    const [x, y] = await Promise.all([
      punchDetailed({ port: a, remote: [{ host: 'localhost', port: b.port }] }),
      punchDetailed({ port: b, remote: { host: LOCAL, port: a.port } }),
    ]);
    expect(x.remote).toEqual({ host: LOCAL, port: b.port });
    await destroyAll(x.socket, y.socket);
    a.close();
    b.close();
  });

  it('connect with a low first-SYN TTL (ttl: 1) and then carry data both ways', async () => {
    const a = await bindReusable({ address: LOCAL });
    const b = await bindReusable({ address: LOCAL });
    // On loopback a TTL of 1 is enough to arrive, so both sides still meet; what matters is that nothing breaks.
    const [x, y] = await Promise.all([
      punchDetailed({ port: a, remote: { host: LOCAL, port: b.port }, ttl: 1 }),
      punchDetailed({ port: b, remote: { host: LOCAL, port: a.port }, ttl: 1 }),
    ]);
    await exchange(x.socket, y.socket, 256 * 1024);
    await destroyAll(x.socket, y.socket);
    a.close();
    b.close();
  });

  const hasIPv6 = Object.values(networkInterfaces()).some((l) => l?.some((i) => i.address === '::1'));
  it.skipIf(!hasIPv6)('work over IPv6', skipNote('no ::1 on loopback', 'sysctl -w net.ipv6.conf.lo.disable_ipv6=0 && npx vitest run test/punch.test.ts'), async () => {
    const a = await bindReusable({ address: '::1' });
    const b = await bindReusable({ address: '::1' });
    expect(a.family).toBe(6);
    const [x, y] = await punchPair(a, b, '::1');
    await exchange(x.socket, y.socket, 64 * 1024);
    await destroyAll(x.socket, y.socket);
    a.close();
    b.close();
  });
});

describe('connect path, accept path and failure', () => {
  noFdLeak();

  it('wins through connect() against a peer that only listens', async () => {
    const server = await listen((s) => s.end('hi from listener'));
    const r = await punchDetailed({ localAddress: LOCAL, remote: { host: LOCAL, port: portOf(server) } });
    expect(r.via).toBe('connect');
    const [data] = await once(r.socket, 'data');
    expect(String(data)).toBe('hi from listener');
    await destroyAll(r.socket);
    await closeServer(server);
  });

  it("wins through accept() when the peer's connection arrives first", async () => {
    // The peer's own port: reserved, then released so the peer can connect from it as a plain client.
    const reserve = await bindReusable({ address: LOCAL, listen: false });
    const peerPort = reserve.port;
    reserve.close();
    const a = await bindReusable({ address: LOCAL });
    const pending = punchDetailed({ port: a, remote: { host: LOCAL, port: peerPort }, retryDelayMs: 50 });
    const client = connect({ host: LOCAL, port: a.port, localAddress: LOCAL, localPort: peerPort });
    await once(client, 'connect');
    const r = await pending;
    expect(r.via).toBe('accept');
    expect(r.remote).toEqual({ host: LOCAL, port: peerPort });
    r.socket.write('over accept');
    const [data] = await once(client, 'data');
    expect(String(data)).toBe('over accept');
    await destroyAll(r.socket, client);
    a.close();
  });

  it('turns away a stranger on the port and still wins with the expected peer', async () => {
    const server = await listen();
    const a = await bindReusable({ address: LOCAL });
    const reserve = await bindReusable({ address: LOCAL, listen: false });
    const peerPort = reserve.port;
    reserve.close();
    const pending = punchDetailed({ port: a, remote: { host: LOCAL, port: peerPort }, retryDelayMs: 50 });
    const stranger = connect({ host: LOCAL, port: a.port });
    stranger.on('error', () => {});
    const strangerClosed = once(stranger, 'close');
    stranger.resume();
    await strangerClosed;
    const peer = connect({ host: LOCAL, port: a.port, localAddress: LOCAL, localPort: peerPort });
    const r = await pending;
    expect(r.remote.port).toBe(peerPort);
    await destroyAll(r.socket, peer);
    a.close();
    await closeServer(server);
  });

  it('fails with ETIMEDOUT, the attempts made and the last error when nobody answers', async () => {
    const reserve = await bindReusable({ address: LOCAL, listen: false });
    const deadPort = reserve.port;
    reserve.close();
    const err = await punch({ localAddress: LOCAL, remote: { host: LOCAL, port: deadPort }, timeoutMs: 600, retryDelayMs: 100 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ name: 'TcpPunchError', code: 'ETIMEDOUT', lastErrors: { [`${LOCAL}:${deadPort}`]: 'ECONNREFUSED' } });
    expect((err as { attempts: number }).attempts).toBeGreaterThan(1);
    expect((err as Error).message).toMatch(/timed out after \d+ attempt/);
  });

  it('reports EADDRINUSE when a socket without reuse options holds the local port', async () => {
    const server = await listen();
    const err = await punch({ localAddress: LOCAL, localPort: portOf(server), remote: { host: LOCAL, port: 9 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EADDRINUSE', syscall: 'bind' });
    await closeServer(server);
  });
});

describe('port reuse', () => {
  noFdLeak();

  it('keeps a control connection from port P while a punch listens and connects from P', async () => {
    const echo = await listen((s) => s.pipe(s));
    const a = await bindReusable({ address: LOCAL });
    const b = await bindReusable({ address: LOCAL });
    const control = await a.connect({ host: LOCAL, port: portOf(echo) });
    expect(control.localPort).toBe(a.port);

    const [x, y] = await punchPair(a, b);
    expect(x.socket.localPort).toBe(control.localPort);

    control.write('still here');
    const [echoed] = await once(control, 'data');
    expect(String(echoed)).toBe('still here');
    await exchange(x.socket, y.socket, 256 * 1024);
    await destroyAll(control, x.socket, y.socket);
    a.close();
    b.close();
    await closeServer(echo);
  });

  it('refuses at once when connecting from a held port to a closed port', async () => {
    const a = await bindReusable({ address: LOCAL });
    const reserve = await bindReusable({ address: LOCAL, listen: false });
    const dead = reserve.port;
    reserve.close();
    await expect(a.connect({ host: LOCAL, port: dead })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    a.close();
    expect(a.closed).toBe(true);
    await expect(a.connect({ host: LOCAL, port: dead })).rejects.toMatchObject({ code: 'ERR_PORT_CLOSED' });
    a.close();
  });

  it('lets a punch finish on a port whose holder closed it meanwhile', async () => {
    const a = await bindReusable({ address: LOCAL });
    const b = await bindReusable({ address: LOCAL });
    const pending = punchPair(a, b);
    a.close();
    const [x, y] = await pending;
    await destroyAll(x.socket, y.socket);
    b.close();
  });
});

describe('abort', () => {
  noFdLeak();

  it('ends a punch in flight with ABORT_ERR and the signal reason as cause', async () => {
    const reserve = await bindReusable({ address: LOCAL, listen: false });
    const dead = reserve.port;
    reserve.close();
    const ac = new AbortController();
    const pending = punch({ localAddress: LOCAL, remote: { host: LOCAL, port: dead }, timeoutMs: 60_000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('changed my mind')), 100);
    const err = await pending.catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    expect((err as Error).cause).toMatchObject({ message: 'changed my mind' });
  });

  it('rejects at once with an aborted signal and opens nothing', async () => {
    const before = openFds();
    await expect(
      punch({ localAddress: LOCAL, remote: { host: LOCAL, port: 9 }, signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(openFds()).toBe(before);
  });

  it('aborts 100 punches at once', async () => {
    const ac = new AbortController();
    const pending = Array.from({ length: 100 }, () =>
      punch({ localAddress: LOCAL, remote: { host: LOCAL, port: 9 }, timeoutMs: 60_000, signal: ac.signal }).catch((e: unknown) => e),
    );
    setTimeout(() => ac.abort(), 50);
    for (const err of await Promise.all(pending)) expect(err).toMatchObject({ code: 'ABORT_ERR' });
  });
});

describe('invalid arguments', () => {
  noFdLeak();
  const remote = { host: LOCAL, port: 1234 };
  const cases: [string, unknown, string, string][] = [
    ['no options', undefined, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['remote missing', {}, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['remote empty list', { remote: [] }, 'RangeError', 'ERR_INVALID_ARG_VALUE'],
    ['remote host number', { remote: { host: 1, port: 1 } }, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['remote port 0', { remote: { host: LOCAL, port: 0 } }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['remote port 70000', { remote: { host: LOCAL, port: 70000 } }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['remote port string', { remote: { host: LOCAL, port: '80' } }, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['localPort -1', { remote, localPort: -1 }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['localPort 1.5', { remote, localPort: 1.5 }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['localAddress name', { remote, localAddress: 'localhost' }, 'RangeError', 'ERR_INVALID_ARG_VALUE'],
    ['timeoutMs 0', { remote, timeoutMs: 0 }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['timeoutMs NaN', { remote, timeoutMs: Number.NaN }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['retryDelayMs -5', { remote, retryDelayMs: -5 }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['ttl 256', { remote, ttl: 256 }, 'RangeError', 'ERR_OUT_OF_RANGE'],
    ['signal not a signal', { remote, signal: {} }, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['port not a ReusablePort', { remote, port: 5 }, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['allowHalfOpen not a boolean', { remote, allowHalfOpen: 1 }, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
    ['verify not a function', { remote, verify: true }, 'TypeError', 'ERR_INVALID_ARG_TYPE'],
  ];
  it.each(cases)('%s', async (_name, options, name, code) => {
    const err = await punch(options as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(name === 'TypeError' ? TypeError : RangeError);
    expect(err).toMatchObject({ code });
  });

  it('rejects a remote of another address family with ERR_NO_USABLE_ADDRESS', async () => {
    await expect(punch({ localAddress: LOCAL, remote: { host: '::1', port: 80 } })).rejects.toMatchObject({
      code: 'ERR_NO_USABLE_ADDRESS',
    });
  });

  it('rejects bad bindReusable options', async () => {
    await expect(bindReusable({ port: 65536 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(bindReusable({ family: 5 as 4 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(bindReusable({ address: 'nope' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    // An explicit address decides the family.
    const v6 = await bindReusable({ address: '::1', family: 4 }).catch(() => null);
    if (v6) {
      expect(v6.family).toBe(6);
      v6.close();
    }
  });

  it('rejects a host name that does not resolve with its resolver code', async () => {
    const err = await punch({ remote: { host: 'no-such-host.invalid', port: 80 }, timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'TcpPunchError' });
    expect((err as { code: string }).code).toMatch(/^E[A-Z]+$/);
  });
});

/**
 * A stand-in for direct-auth: each side writes `secret` and a newline and expects the same line back. Rejects on
 * another line, a line longer than 64 bytes, the far side closing first, its own `timeoutMs`, or `signal`.
 */
function lineProof(secret: string, timeoutMs = 5000): (socket: Socket, signal: AbortSignal) => Promise<void> {
  return (socket, signal) =>
    new Promise((resolve, reject) => {
      let buf = '';
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        socket.off('readable', onReadable).off('end', onEnd).off('close', onEnd);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      // 'readable' and read(), as the library's own frame reader does: once the listener is gone the socket is back
      // in its initial mode, and the bytes after the proof line are unshifted for the next reader.
      const onReadable = (): void => {
        let chunk: Buffer | null;
        while ((chunk = socket.read() as Buffer | null) !== null) {
          buf += chunk.toString('latin1');
          const nl = buf.indexOf('\n');
          if (nl >= 0) {
            const rest = buf.slice(nl + 1);
            if (rest) socket.unshift(Buffer.from(rest, 'latin1'));
            return finish(buf.slice(0, nl) === secret ? undefined : new Error('wrong proof'));
          }
          if (buf.length > 64) return finish(new Error('no proof line'));
        }
      };
      const onEnd = (): void => finish(new Error('closed before the proof'));
      const onAbort = (): void => finish(signal.reason as Error);
      const timer = setTimeout(() => finish(Object.assign(new Error('no proof in time'), { code: 'ETIMEDOUT' })), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      socket.on('readable', onReadable).on('end', onEnd).on('close', onEnd);
      socket.write(`${secret}\n`);
    });
}

/**
 * Connects a stranger from the loopback address to `port` and sends `say` (nothing when undefined). `heard`: the
 * punch took the connection as a candidate (its proof line arrived); `closed`: the punch closed it (a reset may
 * come before the stranger even saw its connect complete).
 */
function stranger(port: number, say?: string | Buffer): { socket: Socket; heard: Promise<void>; closed: Promise<void> } {
  const socket = connect({ host: LOCAL, port });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const heard = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  if (say !== undefined) socket.write(say);
  return { socket, heard, closed };
}

describe('verify: accepting from the host on any port', () => {
  noFdLeak();
  const SECRET = 'the pair key';

  it('strangers on the same address who connect first (wrong proof, no proof, garbage) do not end the punch; the real peer wins', async () => {
    const a = await bindReusable({ address: LOCAL });
    // Not listening until its punch runs: a's connector is refused (and retries) instead of queueing there.
    const b = await bindReusable({ address: LOCAL, listen: false });
    const pending = punchDetailed({
      port: a,
      remote: { host: LOCAL, port: b.port },
      acceptFrom: 'host',
      verify: lineProof(SECRET, 500),
      timeoutMs: 20_000,
      retryDelayMs: 50,
    });
    const strangers = [stranger(a.port, 'not the pair key\n'), stranger(a.port), stranger(a.port, Buffer.alloc(4096, 0x41))];
    // Every stranger was verified and turned away (the silent one by the verify's own timeout) ...
    await Promise.all(strangers.map((s) => s.closed));
    // ... and the punch is still listening and connecting: the real peer arrives only now.
    const [x, y] = await Promise.all([
      pending,
      punchDetailed({ port: b, remote: { host: LOCAL, port: a.port }, acceptFrom: 'host', verify: lineProof(SECRET) }),
    ]);
    expect(x.remote).toEqual({ host: LOCAL, port: b.port });
    expect(y.remote).toEqual({ host: LOCAL, port: a.port });
    await exchange(x.socket, y.socket, 64 * 1024);
    await destroyAll(x.socket, y.socket);
    a.close();
    b.close();
  });

  it('verifies candidates side by side: the peer wins while a silent stranger is still being verified, which is then closed', async () => {
    const a = await bindReusable({ address: LOCAL });
    const b = await bindReusable({ address: LOCAL });
    const signals: AbortSignal[] = [];
    const proof = lineProof(SECRET, 60_000);
    const pending = punchDetailed({
      port: a,
      remote: { host: LOCAL, port: b.port },
      acceptFrom: 'host',
      verify: (socket, signal) => {
        signals.push(signal);
        return proof(socket, signal);
      },
      timeoutMs: 20_000,
    });
    const silent = stranger(a.port);
    await silent.heard;
    const [x, y] = await Promise.all([pending, punchDetailed({ port: b, remote: { host: LOCAL, port: a.port }, verify: lineProof(SECRET) })]);
    await silent.closed;
    expect(x.remote.port).toBe(b.port);
    expect(signals).toHaveLength(2);
    expect(signals.filter((s) => s.aborted)).toHaveLength(1);
    // The winner's bytes after its proof stay in the socket.
    y.socket.write('after the proof');
    const [data] = await once(x.socket, 'data');
    expect(String(data)).toBe('after the proof');
    await destroyAll(x.socket, y.socket);
    a.close();
    b.close();
  });

  it('rejects at the deadline with ERR_AUTH_FAILED when only strangers came, and closes them', async () => {
    const reserve = await bindReusable({ address: LOCAL, listen: false });
    const deadPort = reserve.port;
    reserve.close();
    const a = await bindReusable({ address: LOCAL });
    const pending = punch({
      port: a,
      remote: { host: LOCAL, port: deadPort },
      acceptFrom: 'host',
      verify: lineProof(SECRET),
      timeoutMs: 1500,
      retryDelayMs: 50,
    }).catch((e: unknown) => e);
    const strangers = [stranger(a.port, 'guess one\n'), stranger(a.port, 'guess two\n')];
    await Promise.all(strangers.map((s) => s.closed));
    const err = await pending;
    expect(err).toMatchObject({ name: 'TcpPunchError', code: 'ERR_AUTH_FAILED', rejected: 2 });
    expect((err as Error).cause).toMatchObject({ message: 'wrong proof' });
    expect((err as Error).message).toMatch(/2 connection\(s\) from 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+ failed verification/);
    expect((err as { lastErrors: Record<string, string> }).lastErrors).toEqual({ [`${LOCAL}:${deadPort}`]: 'ECONNREFUSED' });
    a.close();
  });

  it("ends at once with the verify's error when a connection from the peer's exact endpoint fails verification", async () => {
    let n = 0;
    const server = await listen((s) => {
      n++;
      s.on('error', () => {}).resume();
      s.end('an impostor\n');
    });
    const err = await punch({ localAddress: LOCAL, remote: { host: LOCAL, port: portOf(server) }, verify: lineProof(SECRET), timeoutMs: 20_000 }).catch(
      (e: unknown) => e,
    );
    // The verify's own error (at the deadline it would be ERR_AUTH_FAILED), after one connection.
    expect(err).toMatchObject({ message: 'wrong proof' });
    expect(n).toBe(1);
    await closeServer(server);
  });

  it('ends a verify that never settles at the deadline (ETIMEDOUT): its signal fires and the socket is closed', async () => {
    const a = await bindReusable({ address: LOCAL });
    let seen: AbortSignal | undefined;
    const pending = punch({
      port: a,
      remote: { host: LOCAL, port: 9 },
      acceptFrom: 'host',
      verify: (_socket, signal) => {
        seen = signal;
        return new Promise(() => {});
      },
      timeoutMs: 800,
    }).catch((e: unknown) => e);
    const silent = stranger(a.port, 'hello?\n');
    const err = await pending;
    expect(err).toMatchObject({ code: 'ETIMEDOUT' });
    expect(seen?.aborted).toBe(true);
    await silent.closed;
    a.close();
  });

  it('aborts during verify: ABORT_ERR with the reason, the verify signal fires, the candidate is closed', async () => {
    const a = await bindReusable({ address: LOCAL });
    const ac = new AbortController();
    let seen: AbortSignal | undefined;
    const pending = punch({
      port: a,
      remote: { host: LOCAL, port: 9 },
      acceptFrom: 'host',
      signal: ac.signal,
      timeoutMs: 60_000,
      verify: (socket, signal) => {
        seen = signal;
        socket.write('proof please\n');
        return new Promise(() => {});
      },
    }).catch((e: unknown) => e);
    const s = stranger(a.port);
    await s.heard;
    ac.abort(new Error('user gave up'));
    const err = await pending;
    expect(err).toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    expect((err as Error).cause).toMatchObject({ message: 'user gave up' });
    expect(seen?.aborted).toBe(true);
    await s.closed;
    a.close();
  });

  it('verifies at most 16 candidates at once and turns the rest away at once', async () => {
    const a = await bindReusable({ address: LOCAL });
    let calls = 0;
    const pending = punch({
      port: a,
      remote: { host: LOCAL, port: 9 },
      acceptFrom: 'host',
      timeoutMs: 5000,
      verify: (_socket, signal) => {
        calls++;
        return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      },
    }).catch((e: unknown) => e);
    const crowd = Array.from({ length: 20 }, () => stranger(a.port));
    let closed = 0;
    for (const s of crowd) void s.closed.then(() => closed++);
    // Four are reset at once; the sixteen being verified stay open until the deadline.
    const until = Date.now() + 4000;
    while (closed < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(4);
    expect(calls).toBe(16);
    expect(await pending).toMatchObject({ code: 'ETIMEDOUT' });
    await Promise.all(crowd.map((s) => s.closed));
    a.close();
  });

  it('a verify that throws synchronously counts as a failed candidate', async () => {
    const a = await bindReusable({ address: LOCAL });
    const pending = punch({
      port: a,
      remote: { host: LOCAL, port: 9 },
      acceptFrom: 'host',
      timeoutMs: 800,
      verify: () => {
        throw new Error('boom');
      },
    }).catch((e: unknown) => e);
    const s = stranger(a.port);
    await s.closed;
    expect(await pending).toMatchObject({ code: 'ERR_AUTH_FAILED', rejected: 1, cause: { message: 'boom' } });
    a.close();
  });
});
