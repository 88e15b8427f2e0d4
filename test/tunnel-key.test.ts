/**
 * Per-service keys and end-to-end encryption, with real processes (serve, expose, connect): the right key carries
 * a hash-checked stream (encrypted, or zero-copy with --no-encrypt); a wrong key, no key, a replayed proof and a
 * peer not on --allow are refused with their code, the connecting side says why and exits, the local service
 * sees no connection and the exposing side leaks no descriptor; an open server refuses an unguarded service.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Peer } from '../lib/peer/index.js';
import { connectorHandshake } from '../lib/tunnel/handshake.js';
import { REFUSE, readBytes } from '../lib/tunnel/wire.js';
import { runCli, runCliToEnd } from './helpers/cli.js';
import { SECRET, client, connectTo, expose, fdsOf, freePort, serve, until, useRig } from './helpers/tunnel-rig.js';

const { track, defer, echo: trackedEcho } = useRig();

async function setup(exposeArgs: string[], serveArgs: string[] = []) {
  const echo = await trackedEcho();
  const serverPort = await freePort();
  const server = track(serve(serverPort, serveArgs));
  await server.waitFor('listening');
  const exposer = track(expose(serverPort, 'svc', echo.port, exposeArgs));
  const exposing = await exposer.waitFor('exposing');
  return { echo, serverPort, exposer, exposing };
}

/** The connecting side is refused: it says why and exits 4; the service saw nothing; no descriptor leaked. */
async function expectRefused(r: Awaited<ReturnType<typeof setup>>, connectArgs: string[], code: string, why: RegExp) {
  await sleep(300);
  const baseline = fdsOf(r.exposer.child.pid!);
  const c = track(connectTo(r.serverPort, 'svc', ['--id', 'alice', ...connectArgs]));
  expect(await c.exited).toBe(4);
  expect(c.output()).toMatch(why);
  expect(c.events.find((e) => e.event === 'tunnel-fail')).toMatchObject({ code, refused: true });
  const logged = await r.exposer.waitFor('tunnel-fail');
  expect(logged).toMatchObject({ peerId: 'alice', code });
  expect(r.echo.connections()).toBe(0);
  expect(await until(() => fdsOf(r.exposer.child.pid!) === baseline, 10_000)).toBe(true);
}

describe('tunnel with a service key', () => {
  it.each(['relay', 'direct', 'relay-first'])('the right key carries a hash-checked stream over %s, encrypted', async (strategy) => {
    const r = await setup(['--key', 'k-123']);
    expect(r.exposing).toMatchObject({ encrypted: true, access: 'who may connect: holding the service key' });
    const c = track(connectTo(r.serverPort, 'svc', ['--key', 'k-123', '--strategy', strategy]));
    const port = (await c.waitFor('listening')).port as number;
    for (let i = 0; i < 2; i++) expect(await client(port, 1024 * 1024)).toMatchObject({ ok: true });
    // A relay-first tunnel starts on the relay (and may move to a punched socket under TLS later).
    expect(await c.waitFor('tunnel-open')).toMatchObject({ path: strategy === 'relay-first' ? 'relay' : strategy });
    expect(r.echo.connections()).toBe(2);
  });

  it('with --no-encrypt on both sides: the key is proven, the stream carried', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tp-key-'));
    execFileSync('sh', ['-c', `printf 'k-file\\n' > ${dir}/key`]);
    const r = await setup(['--key-file', join(dir, 'key'), '--no-encrypt']);
    expect(r.exposing).toMatchObject({ encrypted: false });
    const c = track(connectTo(r.serverPort, 'svc', ['--key-file', join(dir, 'key'), '--no-encrypt']));
    const port = (await c.waitFor('listening')).port as number;
    expect(await client(port, 256 * 1024)).toMatchObject({ ok: true });
  });

  it('takes the key from TCP_PUNCH_SERVICE_KEY', async () => {
    const echo = await trackedEcho();
    const serverPort = await freePort();
    await track(serve(serverPort)).waitFor('listening');
    await track(expose(serverPort, 'svc', echo.port, [], { TCP_PUNCH_SERVICE_KEY: 'k-env' })).waitFor('exposing');
    const c = track(connectTo(serverPort, 'svc', ['--key', 'k-env']));
    const port = (await c.waitFor('listening')).port as number;
    expect(await client(port)).toMatchObject({ ok: true });
  });

  it('a wrong key is refused: ERR_SERVICE_KEY on both sides, "refused by the service: wrong key", exit 4', async () => {
    const r = await setup(['--key', 'k-123']);
    await expectRefused(r, ['--key', 'k-999'], 'ERR_SERVICE_KEY', /refused by the service: wrong key/);
  });

  it('no key is refused the same way', async () => {
    const r = await setup(['--key', 'k-123']);
    await expectRefused(r, [], 'ERR_SERVICE_KEY', /refused by the service: wrong key/);
  });

  it('a peer not on --allow is refused with ERR_SERVICE_NOT_ALLOWED, even with the right key', async () => {
    const r = await setup(['--key', 'k-123', '--allow', 'bob,carol']);
    expect(r.exposing.access).toBe('who may connect: only peers bob, carol, holding the service key');
    await expectRefused(r, ['--key', 'k-123'], 'ERR_SERVICE_NOT_ALLOWED', /refused by the service: this peer is not on its --allow list/);
  });

  it('a peer on --allow is served', async () => {
    const r = await setup(['--allow', 'alice']);
    const c = track(connectTo(r.serverPort, 'svc', ['--id', 'alice']));
    const port = (await c.waitFor('listening')).port as number;
    expect(await client(port)).toMatchObject({ ok: true });
  });

  it('a replayed proof (the bytes of an accepted handshake, sent again) is refused with ERR_SERVICE_KEY', async () => {
    const r = await setup(['--key', 'k-123', '--no-encrypt']);
    const peer = await Peer.connect({ server: `127.0.0.1:${r.serverPort}`, id: 'mallory', secret: SECRET });
    defer(() => peer.close());
    const first = await peer.dial('svc');
    const sent: Buffer[] = [];
    const write = first.socket.write.bind(first.socket);
    first.socket.write = ((chunk: Buffer, ...rest: never[]) => (sent.push(Buffer.from(chunk)), write(chunk, ...rest))) as typeof write;
    await connectorHandshake(first.socket, { key: Buffer.from('k-123'), encrypt: false, selfId: 'mallory', peerId: 'svc' });
    first.socket.destroy();
    const second = await peer.dial('svc');
    second.socket.on('error', () => {});
    second.socket.write(Buffer.concat(sent));
    await readBytes(second.socket, 20, 5000); // the service's HELLO
    expect([...(await readBytes(second.socket, 2, 5000))]).toEqual([REFUSE, 1]);
    second.socket.destroy();
    expect(await r.exposer.waitFor('tunnel-fail')).toMatchObject({ peerId: 'mallory', code: 'ERR_SERVICE_KEY' });
    expect(r.echo.connections()).toBe(0);
  });
});

describe('expose on an open server', () => {
  it('refuses to start without --key, --allow or --public (exit 2), and says who may connect when it starts', async () => {
    const serverPort = await freePort();
    const server = track(runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(serverPort), '--no-probe']));
    await server.waitFor('listening');
    const base = ['expose', '--json', '--no-probe', '--server', `127.0.0.1:${serverPort}`, '--to', '127.0.0.1:9'];
    const refused = await runCliToEnd([...base, '--id', 'open-a']);
    expect(refused.code).toBe(2);
    expect(refused.output).toMatch(/the server is open .*--key-file.*--allow.*--public/);
    const pub = track(runCli([...base, '--id', 'open-b', '--public']));
    expect(await pub.waitFor('exposing')).toMatchObject({ access: 'who may connect: anyone (public, on an open server)' });
    const keyed = track(runCli([...base, '--id', 'open-c', '--key', 'k']));
    expect(await keyed.waitFor('exposing')).toMatchObject({ access: 'who may connect: holding the service key' });
  });

  it('--no-encrypt without a key is a usage error', async () => {
    const r = await runCliToEnd(['expose', '--server', '127.0.0.1:9', '--id', 'x', '--to', '127.0.0.1:9', '--no-encrypt']);
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/--no-encrypt needs a key/);
  });
});

const CAPTURE = fileURLToPath(new URL('./fixtures/capture-lo.py', import.meta.url));
const canCapture = process.getuid?.() === 0 && (() => {
  try {
    execFileSync('python3', ['--version']);
    return true;
  } catch {
    return false;
  }
})();

/** Captures the TCP payload on lo (but of the excluded ports) while `body` runs; resolves the bytes. */
async function capture(excluded: number[], body: () => Promise<void>): Promise<Buffer> {
  const out = join(mkdtempSync(join(tmpdir(), 'tp-cap-')), 'lo.bin');
  const py = spawn('python3', [CAPTURE, out, excluded.join(',')], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => createInterface({ input: py.stdout! }).once('line', () => resolve()));
  try {
    await body();
    await sleep(300);
  } finally {
    py.stdin!.end();
    await new Promise((r) => py.once('exit', r));
  }
  return readFileSync(out);
}

describe.skipIf(!canCapture)('what the path sees (a capture on lo of all but the local legs)', () => {
  it.each([
    ['relay', true],
    ['relay', false],
    ['direct', true],
    ['direct', false],
  ] as const)('over %s with encryption %s', async (strategy, encrypted) => {
    const flags = encrypted ? ['--key', 'k-cap'] : ['--key', 'k-cap', '--no-encrypt'];
    const r = await setup(flags);
    const c = track(connectTo(r.serverPort, 'svc', [...flags, '--strategy', strategy]));
    const port = (await c.waitFor('listening')).port as number;
    const marker = `MARKER-${randomBytes(8).toString('hex')}`;
    const seen = await capture([port, r.echo.port], async () => {
      expect(await client(port, 256 * 1024, marker)).toMatchObject({ ok: true });
    });
    expect(await c.waitFor('tunnel-open')).toMatchObject({ path: strategy });
    expect(seen.length).toBeGreaterThan(256 * 1024);
    expect(seen.includes(Buffer.from(marker))).toBe(!encrypted);
  });
});
