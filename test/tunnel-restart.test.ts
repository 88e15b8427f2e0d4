/**
 * Tunnels that come back (real processes): the server SIGKILLed and restarted, the exposing side restarted, a
 * spare ended by the relay's idle limit, a direct spare reset. After each, N clients in a row are all served: no
 * client is handed a dead spare (no `tunnel-fail`), and the connecting side's descriptors come back to where they
 * were.
 */
import { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Peer } from '../lib/peer/index.js';
import { exposeService } from '../lib/tunnel/expose.js';
import type { CliProcess } from './helpers/cli.js';
import { SECRET, client, connectTo, count, expose, fdsOf, freePort, serve, until, useRig } from './helpers/tunnel-rig.js';

const CLIENTS = 4;
const { track, defer, echo: trackedEcho } = useRig();

async function rig(strategy: 'relay' | 'direct', serveArgs: string[] = []) {
  const echo = await trackedEcho();
  const serverPort = await freePort();
  const server = track(serve(serverPort, serveArgs));
  await server.waitFor('listening');
  const exposer = track(expose(serverPort, 'svc', echo.port));
  await exposer.waitFor('exposing');
  const connector = track(connectTo(serverPort, 'svc', ['--strategy', strategy, '--pool', '2', '--wait-peer', '20s']));
  const port = (await connector.waitFor('listening')).port as number;
  return { echo, serverPort, server, exposer, connector, port };
}

/** Failures of local clients (not of the pool's refills while the peer was away). */
function clientFailures(p: CliProcess): Record<string, unknown>[] {
  return p.events.filter((e) => e.event === 'tunnel-fail' && e.spare !== true);
}

/** N clients one after the other; all must be served. */
async function clientsInARow(port: number, n = CLIENTS): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await client(port);
    expect(r, `client ${i + 1} of ${n}`).toMatchObject({ ok: true });
    times.push(r.ms);
  }
  return times;
}

/** The connecting side's descriptors once its pool is full again (bounded wait), against `baseline`. */
async function settledFds(pid: number, baseline: number): Promise<number> {
  await until(() => fdsOf(pid) === baseline, 15_000);
  return fdsOf(pid);
}

describe.each(['relay', 'direct'] as const)('tunnel over %s: the server SIGKILLed and restarted', (strategy) => {
  it(`serves ${CLIENTS} clients in a row after the restart, none handed a dead spare, no descriptor leaked`, async () => {
    const r = await rig(strategy);
    await clientsInARow(r.port, 1);
    const pid = r.connector.child.pid!;
    // The pool is full and steady: two spares, as many descriptors as that takes.
    await sleep(1500);
    const baseline = fdsOf(pid);
    const onlineBefore = count(r.connector, 'online');
    r.server.child.kill('SIGKILL');
    await r.server.exited;
    // A client while the server is away: a punched spare outlives the server and serves it at once; a relayed
    // one died with the relay, so the client waits (bounded by --wait-peer) and is served once the server is back.
    const first = client(r.port);
    let toFirstServed = 0;
    if (strategy === 'direct') {
      expect(await first).toMatchObject({ ok: true });
      expect(count(r.connector, 'tunnel-wait')).toBe(0);
    } else {
      expect(await until(() => count(r.connector, 'tunnel-wait') > 0, 10_000)).toBe(true);
      expect(r.connector.events.find((e) => e.event === 'tunnel-wait')).toMatchObject({ reason: expect.stringMatching(/the server is away|ERR_SERVER_DISCONNECTED/) });
    }
    const restarted = track(serve(r.serverPort));
    await restarted.waitFor('listening');
    const back = Date.now();
    if (strategy === 'relay') {
      expect(await first).toMatchObject({ ok: true });
      toFirstServed = Date.now() - back;
    }
    await clientsInARow(r.port);
    expect(count(r.connector, 'online')).toBeGreaterThan(onlineBefore);
    const opens = r.connector.events.filter((e) => e.event === 'tunnel-open');
    expect(opens.every((e) => e.path === strategy)).toBe(true);
    expect(clientFailures(r.connector)).toEqual([]);
    expect(await settledFds(pid, baseline)).toBe(baseline);
    if (strategy === 'relay') console.log(`[timeline] relay: server back → the waiting client served in ${toFirstServed} ms`);
  });
});

describe('tunnel: the exposing side restarted', () => {
  it(`drops the spares it held, refills once it is back, serves ${CLIENTS} clients in a row`, async () => {
    const r = await rig('relay');
    await clientsInARow(r.port, 1);
    r.exposer.child.kill('SIGKILL');
    await r.exposer.exited;
    // Its spares die with it and are dropped at once, before any client asks for one.
    expect(await until(() => count(r.connector, 'spare-drop') >= 2, 10_000)).toBe(true);
    const again = track(expose(r.serverPort, 'svc', r.echo.port));
    await again.waitFor('exposing');
    await clientsInARow(r.port);
    expect(clientFailures(r.connector)).toEqual([]);
  });
});

describe('tunnel: a client while the peer is away', () => {
  it('waits at most --wait-peer, and the log says why it waited and why it gave up', async () => {
    const r = await rig('relay');
    r.exposer.child.kill('SIGKILL');
    await r.exposer.exited;
    const impatient = track(connectTo(r.serverPort, 'svc', ['--strategy', 'relay', '--pool', '0', '--wait-peer', '1s']));
    const port = (await impatient.waitFor('listening')).port as number;
    expect(await client(port)).toMatchObject({ ok: false, got: 0 });
    expect(await impatient.waitFor('tunnel-wait')).toMatchObject({ reason: expect.stringMatching(/^ERR_PEER_OFFLINE/) });
    expect(await impatient.waitFor('tunnel-fail')).toMatchObject({ code: 'ERR_PEER_OFFLINE', message: expect.stringMatching(/^gave up after waiting \d+ ms/) });
    expect(r.echo.connections()).toBe(0);
  });
});

describe('tunnel: a relayed spare ended by the relay idle limit', () => {
  it('is dropped when the relay ends it, the pool pings within the limit from then on, and clients are served', async () => {
    const r = await rig('relay', ['--relay-idle-timeout', '1500ms']);
    // Idle spares outlive the limit: the relay ends them (limit-idle) and the pool learns the limit.
    const idleDrops = () => r.connector.events.filter((e) => e.event === 'spare-drop' && /limit-idle/.test(String(e.reason))).length;
    expect(await until(() => idleDrops() >= 2, 10_000)).toBe(true);
    const drops = count(r.connector, 'spare-drop');
    // Refilled spares are kept alive by pings now: over three idle limits, no more drops.
    await sleep(4500);
    expect(count(r.connector, 'spare-drop')).toBe(drops);
    await clientsInARow(r.port);
    expect(clientFailures(r.connector)).toEqual([]);
  });
});

describe('tunnel: a direct spare whose socket is reset', () => {
  it('is dropped when the reset arrives, and the next clients are served on fresh spares', async () => {
    const echo = await trackedEcho();
    const serverPort = await freePort();
    const server = track(serve(serverPort));
    await server.waitFor('listening');
    // The exposing side runs in this process, so that the test can reset the punched sockets it holds.
    const peer = await Peer.connect({ server: `127.0.0.1:${serverPort}`, id: 'svc', secret: SECRET });
    const held: Socket[] = [];
    peer.on('connection', (s) => {
      if (s instanceof Socket) held.push(s);
    });
    const service = exposeService(peer, { to: { host: '127.0.0.1', port: echo.port } });
    defer(async () => {
      service.close();
      await peer.close();
    });
    const connector = track(connectTo(serverPort, 'svc', ['--strategy', 'direct', '--pool', '2']));
    const port = (await connector.waitFor('listening')).port as number;
    // One client first: the pump's own descriptors (its thread's poller) exist from then on.
    await clientsInARow(port, 1);
    expect(await until(() => held.length >= 3, 15_000)).toBe(true);
    await sleep(500);
    const pid = connector.child.pid!;
    const baseline = fdsOf(pid);
    for (const s of held.splice(0)) if (!s.destroyed) s.resetAndDestroy();
    expect(await until(() => count(connector, 'spare-drop') >= 2, 10_000)).toBe(true);
    await clientsInARow(port);
    const opens = connector.events.filter((e) => e.event === 'tunnel-open');
    expect(opens.length).toBe(CLIENTS + 1);
    expect(opens.every((e) => e.path === 'direct')).toBe(true);
    expect(clientFailures(connector)).toEqual([]);
    expect(echo.connections()).toBe(CLIENTS + 1);
    expect(await settledFds(pid, baseline)).toBe(baseline);
  });
});
