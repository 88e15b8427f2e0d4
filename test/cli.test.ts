/**
 * The real CLI processes: serve + expose (in front of a hashing echo service) + connect, a client through the
 * local port, data integrity both ways, logs, clean shutdown; and the exit codes of user mistakes.
 */
import { once } from 'node:events';
import { connect, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runCliToEnd, type CliProcess } from './helpers/cli.js';
import { closeServer, freePort, listen, roundTrip } from './helpers/net.js';

/** Echo service: every byte comes back. */
async function echoService(): Promise<Server> {
  return listen((s) => s.pipe(s));
}

describe('tcp-punch serve / expose / connect', () => {
  let echo: Server;
  let server: CliProcess;
  let exposer: CliProcess;
  let connector: CliProcess;
  let serverPort = 0;
  let localPort = 0;

  beforeAll(async () => {
    echo = await echoService();
    serverPort = await freePort();
    server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(serverPort), '--no-probe', '--secret', 'hunter2']);
    await server.waitFor('listening');
    exposer = runCli([
      'expose', '--json', '--server', `127.0.0.1:${serverPort}`, '--secret', 'hunter2', '--id', 'echo',
      '--to', `127.0.0.1:${(echo.address() as AddressInfo).port}`,
    ]);
    await exposer.waitFor('exposing');
    connector = runCli([
      'connect', '--json', '--server', `127.0.0.1:${serverPort}`, '--secret', 'hunter2', '--peer', 'echo',
      '--listen', '127.0.0.1:0', '--strategy', 'direct',
    ]);
    localPort = (await connector.waitFor('listening')).port as number;
  });

  afterAll(async () => {
    await Promise.all([connector?.stop(), exposer?.stop()]);
    await server?.stop();
    await closeServer(echo);
  });

  it('carries a client through the tunnel, bytes intact both ways', async () => {
    await roundTrip(localPort, 8 * 1024 * 1024);
    const open = await connector.waitFor('tunnel-open');
    expect(open).toMatchObject({ peerId: 'echo', path: 'direct', family: 4 });
    const closed = await connector.waitFor('tunnel-close');
    expect(closed).toMatchObject({ peerId: 'echo', reason: 'eof', bytesAToB: 8 * 1024 * 1024, bytesBToA: 8 * 1024 * 1024 });
    expect(await exposer.waitFor('tunnel-close')).toMatchObject({ reason: 'eof' });
  });

  it('carries several clients at once', async () => {
    await Promise.all(Array.from({ length: 8 }, () => roundTrip(localPort, 256 * 1024)));
  });

  it('shuts down cleanly on SIGINT and SIGTERM with exit code 0', async () => {
    expect(await connector.stop('SIGINT')).toBe(0);
    expect(await exposer.stop('SIGTERM')).toBe(0);
    expect(connector.events.some((e) => e.event === 'stopped')).toBe(true);
  });
});

describe('tcp-punch user mistakes', () => {
  it('exits 2 on a bad address, with the flag named', async () => {
    const r = await runCliToEnd(['connect', '--server', 'nohost', '--peer', 'x', '--listen', '127.0.0.1:1']);
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/--server: expected HOST:PORT/);
  });

  it('exits 2 on bad probe ports, with the flag named', async () => {
    for (const ports of ['7771', '7771,7771', '7771,99999']) {
      const r = await runCliToEnd(['connect', '--server', '127.0.0.1:7770', '--peer', 'x', '--listen', '127.0.0.1:0', '--probe-ports', ports]);
      expect(r.code, ports).toBe(2);
      expect(r.output, ports).toMatch(/--probe-ports/);
    }
  });

  it('exits 2 on an unknown flag and on an unknown command', async () => {
    expect((await runCliToEnd(['serve', '--bogus'])).code).toBe(2);
    expect((await runCliToEnd(['frobnicate'])).code).toBe(2);
  });

  it('prints help with exit 0', async () => {
    const r = await runCliToEnd(['expose', '--help']);
    expect(r.code).toBe(0);
    expect(r.output).toMatch(/Usage: tcp-punch expose/);
  });

  it('exits 3 when the server is unreachable', async () => {
    const port = await freePort();
    const r = await runCliToEnd(['expose', '--server', `127.0.0.1:${port}`, '--id', 'x', '--to', '127.0.0.1:1']);
    expect(r.code).toBe(3);
    expect(r.output).toMatch(/unreachable/);
  });

  it('exits 6 when the listen port is taken', async () => {
    const busy = await listen();
    const port = await freePort();
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(port), '--no-probe']);
    await server.waitFor('listening');
    const r = await runCliToEnd(['connect', '--server', `127.0.0.1:${port}`, '--peer', 'x', '--listen', `127.0.0.1:${(busy.address() as AddressInfo).port}`]);
    expect(r.code).toBe(6);
    expect(r.output).toMatch(/in use/);
    await server.stop();
    await closeServer(busy);
  });

  it('exits 4 on a wrong secret', async () => {
    const port = await freePort();
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(port), '--no-probe', '--secret', 'right']);
    await server.waitFor('listening');
    const r = await runCliToEnd(['expose', '--server', `127.0.0.1:${port}`, '--secret', 'wrong', '--id', 'x', '--to', '127.0.0.1:1']);
    expect(r.code).toBe(4);
    expect(r.output).toMatch(/authentication refused/);
    await server.stop();
  });

  it('exits 6 when serve cannot take its port', async () => {
    const busy = await listen();
    const r = await runCliToEnd(['serve', '--host', '127.0.0.1', '--port', String((busy.address() as AddressInfo).port), '--no-probe']);
    expect(r.code).toBe(6);
    await closeServer(busy);
  });
});

describe('tcp-punch connect to an unknown peer', () => {
  it('says the peer is offline, and a client through the port is closed', async () => {
    const port = await freePort();
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(port), '--no-probe']);
    await server.waitFor('listening');
    const c = runCli(['connect', '--json', '--server', `127.0.0.1:${port}`, '--peer', 'nobody', '--listen', '127.0.0.1:0', '--strategy', 'direct']);
    const local = (await c.waitFor('listening')).port as number;
    const fail = await c.waitFor('tunnel-fail');
    expect(fail).toMatchObject({ peerId: 'nobody', code: 'ERR_PEER_OFFLINE' });
    const client = connect({ host: '127.0.0.1', port: local });
    client.on('error', () => {});
    await once(client, 'close');
    expect(await c.stop()).toBe(0);
    await server.stop();
  });
});

describe('tcp-punch connect through the relay', () => {
  it('carries a client over the relay with --strategy relay, and serve reports relay metrics', async () => {
    const echo = await echoService();
    const port = await freePort();
    const metricsPort = await freePort();
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(port), '--no-probe', '--metrics-port', String(metricsPort)]);
    await server.waitFor('listening');
    const exposer = runCli(['expose', '--json', '--server', `127.0.0.1:${port}`, '--id', 'svc', '--public', '--to', `127.0.0.1:${(echo.address() as AddressInfo).port}`]);
    await exposer.waitFor('exposing');
    const c = runCli(['connect', '--json', '--server', `127.0.0.1:${port}`, '--peer', 'svc', '--listen', '127.0.0.1:0', '--strategy', 'relay', '--pool', '1']);
    const local = (await c.waitFor('listening')).port as number;
    await roundTrip(local, 2 * 1024 * 1024);
    expect(await c.waitFor('tunnel-open')).toMatchObject({ path: 'relay' });
    expect(await c.waitFor('tunnel-close')).toMatchObject({ reason: 'eof', bytesAToB: 2 * 1024 * 1024 });
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^tcp_punch_peers_online 2$/m);
    expect(text).toMatch(/^tcp_punch_relay_sessions_total [1-9]/m);
    expect(text).toMatch(/^tcp_punch_relay_bytes_total{direction="a_to_b"} [1-9]/m);
    expect(await c.stop()).toBe(0);
    expect(await exposer.stop()).toBe(0);
    expect(await server.stop('SIGTERM')).toBe(0);
    await closeServer(echo);
  });

  it('exits 2 on a bad relay limit', async () => {
    const r = await runCliToEnd(['serve', '--relay-max-bytes', 'lots']);
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/--relay-max-bytes/);
  });
});
