/**
 * The CLI run as a service, with real processes: a server with a secret relays a stream longer than the open
 * server's byte cap; one `expose` offers two services from a config file and one `connect` maps two local ports;
 * the server logs each relayed session's end; serve and connect serve metrics that say which path was taken; a bad
 * config file exits 2 naming the file, key and value before anything registers.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { showBytes, showDuration } from '../lib/cli/args.js';
import { RELAY_DEFAULTS, relayDefaults } from '../lib/relay/limits.js';
import { SERVER_DEFAULTS } from '../lib/server/options.js';
import { runCli, runCliToEnd, type CliProcess } from './helpers/cli.js';
import { closeServer, freePort, listen, roundTrip } from './helpers/net.js';
import { until } from './helpers/poll.js';

const dir = mkdtempSync(join(tmpdir(), 'tcp-punch-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A service that answers every connection with `tag` and then echoes. */
function taggedEcho(tag: string): Promise<Server> {
  return listen((s) => {
    s.on('error', () => {}); // a tunnel cut at a relay limit resets this side
    s.write(tag);
    s.pipe(s);
  });
}

/** True when something accepts TCP connections on the port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

const scrape = async (port: number): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();

describe('tcp-punch as a service: secret server, several services, config file, metrics', () => {
  let web: Server;
  let ssh: Server;
  let server: CliProcess;
  let exposer: CliProcess;
  let connector: CliProcess;
  let serverMetricsPort = 0;
  let connectMetricsPort = 0;
  const ports: Record<string, number> = {};

  beforeAll(async () => {
    [web, ssh] = await Promise.all([taggedEcho('W'), taggedEcho('S')]);
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, 'hunter2\n', { mode: 0o600 });
    const serveConfig = join(dir, 'serve.toml');
    // Port 0 everywhere: the system picks free ports, which the processes report in their log events.
    writeFileSync(serveConfig, 'host = "127.0.0.1"\nport = 0\nsecret-file = "secret"\nno-probe = true\nmetrics-port = 0\n');
    server = runCli(['serve', '--json', '--config', serveConfig]);
    const serverPort = (await server.waitFor('listening')).port as number;
    serverMetricsPort = (await server.waitFor('metrics')).port as number;
    const exposeConfig = join(dir, 'expose.toml');
    writeFileSync(
      exposeConfig,
      `server = "127.0.0.1:${serverPort}"\nsecret-file = "${secretFile}"\nno-probe = true\n\n` +
        `[[service]]\nname = "web"\nto = "127.0.0.1:${(web.address() as AddressInfo).port}"\n\n` +
        `[[service]]\nname = "ssh"\nto = "127.0.0.1:${(ssh.address() as AddressInfo).port}"\n`,
    );
    exposer = runCli(['expose', '--json', '--config', exposeConfig]);
    await exposer.waitFor('ready');
    connector = runCli([
      'connect', '--json', '--server', `127.0.0.1:${serverPort}`, '--secret-file', secretFile, '--no-probe', '--strategy', 'relay',
      '--pool', '1', '--map', '0=web', '--map', '127.0.0.1:0=ssh', '--metrics-port', '0',
    ]);
    connectMetricsPort = (await connector.waitFor('metrics')).port as number;
    await connector.waitFor('listening');
    expect(await until(() => connector.events.filter((e) => e.event === 'listening').length === 2, 15_000)).toBe(true);
    for (const e of connector.events.filter((e) => e.event === 'listening')) ports[e.peer as string] = e.port as number;
  });

  afterAll(async () => {
    await Promise.all([connector?.stop(), exposer?.stop()]);
    await server?.stop();
    await Promise.all([web && closeServer(web), ssh && closeServer(ssh)]);
  });

  it('with a secret the relay has no byte or duration cap; the start-up event says so', async () => {
    const listening = await server.waitFor('listening');
    expect(listening).toMatchObject({ auth: 'secret', relay: { maxBytesPerSession: 0, maxDurationMs: 0, idleTimeoutMs: 300_000 } });
  });

  it('carries each mapped port to its own service', async () => {
    await Promise.all([roundTrip(ports.web!, 64 * 1024, 'W'), roundTrip(ports.ssh!, 64 * 1024, 'S')]);
    const closes = (p: CliProcess) => p.events.filter((e) => e.event === 'tunnel-close');
    await expect.poll(() => closes(connector).length).toBeGreaterThanOrEqual(2);
    expect(new Set(closes(connector).map((e) => e.peerId))).toEqual(new Set(['web', 'ssh']));
    await expect.poll(() => new Set(closes(exposer).map((e) => e.service))).toEqual(new Set(['web', 'ssh']));
    expect(closes(connector).every((e) => e.path === 'relay' && e.reason === 'eof')).toBe(true);
  });

  it('relays a stream longer than the open server cap (128M) without cutting it', async () => {
    const bytes = 140 * 1024 * 1024;
    await roundTrip(ports.web!, bytes, 'W');
    await expect.poll(() => server.events.filter((e) => e.event === 'relay-end' && (e.bytesAToB as number) > bytes).length, { timeout: 10_000 }).toBe(1);
  });

  it('logs one line per relayed session end with both ids, bytes each way, duration and reason', () => {
    const ends = server.events.filter((e) => e.event === 'relay-end');
    expect(ends.length).toBeGreaterThanOrEqual(3);
    for (const e of ends) {
      expect(e).toMatchObject({ reason: 'eof', code: '' });
      expect(typeof e.a).toBe('string');
      expect(['web', 'ssh']).toContain(e.b);
      expect(e.bytesAToB).toBeGreaterThan(0);
      expect(e.bytesBToA).toBeGreaterThan(0);
      expect(typeof e.durationMs).toBe('number');
    }
  });

  it('serve and connect metrics: relay coordinations labelled relay, tunnels by service, time to connect', async () => {
    const s = await scrape(serverMetricsPort);
    expect(s).toMatch(/^tcp_punch_coordinations_total\{path="relay",outcome="ok"\} [1-9]/m);
    expect(s).not.toMatch(/^tcp_punch_coordinations_total\{path="direct"/m);
    expect(s).toMatch(/^tcp_punch_coordination_duration_seconds_count\{path="relay",outcome="ok"\} [1-9]/m);
    expect(s).toMatch(/^tcp_punch_relay_session_bytes_count\{reason="eof"\} [1-9]/m);
    expect(s).toMatch(/^process_cpu_seconds_total /m);
    expect(s).toMatch(/^tcp_punch_peers_online 3$/m);
    const c = await scrape(connectMetricsPort);
    expect(c).toMatch(/^tcp_punch_tunnels_opened_total\{service="web",path="relay"\} [1-9]/m);
    expect(c).toMatch(/^tcp_punch_tunnels_opened_total\{service="ssh",path="relay"\} 1$/m);
    expect(c).toMatch(/^tcp_punch_tunnel_connect_seconds_count\{service="ssh",path="relay"\} 1$/m);
    expect(c).toMatch(/^tcp_punch_tunnel_bytes_total\{service="ssh",direction="sent"\} 65536$/m);
    expect(c).toMatch(/^tcp_punch_tunnels_open\{service="ssh"\} 0$/m);
  });

  it('stops cleanly', async () => {
    expect(await connector.stop('SIGTERM')).toBe(0);
    expect(await exposer.stop('SIGINT')).toBe(0);
  });
});

describe('tcp-punch serve start-up line and quiet mode', () => {
  it('an open server says which caps are on; a loose secret file is warned about; --quiet prints nothing at start', async () => {
    const open = runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--no-probe']);
    await expect.poll(() => open.output(), { timeout: 15_000 }).toMatch(/relay on \(per session: byte cap 128M, duration cap 15m, idle limit 5m\)/);
    expect(await open.stop()).toBe(0);
    const loose = join(dir, 'loose-secret');
    writeFileSync(loose, 'x\n');
    chmodSync(loose, 0o644);
    const text = runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--no-probe', '--secret-file', loose, '--relay-idle-timeout', '0']);
    await expect.poll(() => text.output(), { timeout: 15_000 }).toMatch(/relay on \(per session: no byte cap, no duration cap, no idle limit\)/);
    expect(text.output()).toMatch(/WARN --secret-file: .*loose-secret is accessible to other users \(mode 0644\); chmod 600 it/);
    expect(await text.stop()).toBe(0);
    const port = await freePort();
    const quiet = runCli(['serve', '--quiet', '--host', '127.0.0.1', '--port', String(port), '--no-probe', '--secret', 'x']);
    await expect.poll(() => accepts(port), { timeout: 15_000 }).toBe(true); // the quiet server is up
    expect(await quiet.stop()).toBe(0);
    expect(quiet.output()).toBe('');
  });
});

describe('tcp-punch serve at a relay limit', () => {
  it('logs the session end with the limit as its reason, and counts it', async () => {
    const echo = await taggedEcho('');
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', '0', '--no-probe', '--metrics-port', '0', '--relay-max-bytes', '64k']);
    const port = (await server.waitFor('listening')).port as number;
    const metrics = (await server.waitFor('metrics')).port as number;
    const exposer = runCli(['expose', '--json', '--server', `127.0.0.1:${port}`, '--no-probe', '--public', '--id', 'svc', '--to', `127.0.0.1:${(echo.address() as AddressInfo).port}`]);
    await exposer.waitFor('ready');
    const c = runCli(['connect', '--json', '--server', `127.0.0.1:${port}`, '--no-probe', '--strategy', 'relay', '--pool', '0', '--map', '0=svc']);
    const local = (await c.waitFor('listening')).port as number;
    const socket = connect({ host: '127.0.0.1', port: local });
    socket.on('error', () => {});
    socket.resume();
    socket.write(randomBytes(1024 * 1024));
    const end = await server.waitFor('relay-end');
    expect(end).toMatchObject({ reason: 'limit-bytes', code: 'ERR_RELAY_LIMIT_BYTES', b: 'svc' });
    expect((end.bytesAToB as number) + (end.bytesBToA as number)).toBeLessThanOrEqual(64 * 1024);
    expect(await scrape(metrics)).toMatch(/^tcp_punch_relay_sessions_ended_total\{reason="limit-bytes"\} 1$/m);
    socket.destroy();
    expect(await c.stop()).toBe(0);
    expect(await exposer.stop()).toBe(0);
    expect(await server.stop()).toBe(0);
    await closeServer(echo);
  });
});

describe('tcp-punch expose with a name already taken', () => {
  it('exits 4 naming the taken name; the server is left with the holder only', async () => {
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', '0', '--no-probe', '--metrics-port', '0']);
    const port = (await server.waitFor('listening')).port as number;
    const metrics = (await server.waitFor('metrics')).port as number;
    const holder = runCli(['expose', '--json', '--server', `127.0.0.1:${port}`, '--no-probe', '--public', '--id', 'b', '--to', '127.0.0.1:1']);
    await holder.waitFor('ready');
    const r = await runCliToEnd(['expose', '--json', '--server', `127.0.0.1:${port}`, '--no-probe', '--public', '--service', 'a=127.0.0.1:1', '--service', 'b=127.0.0.1:1']);
    expect(r.code).toBe(4);
    expect(r.output).toMatch(/registering as "b".*ERR_ID_TAKEN/);
    expect(r.output).toMatch(/registered as \\"a\\"|"id":"a"/);
    await expect.poll(async () => /^tcp_punch_peers_online 1$/m.test(await scrape(metrics)), { timeout: 10_000 }).toBe(true);
    expect(await holder.stop()).toBe(0);
    expect(await server.stop()).toBe(0);
  });
});

describe('tcp-punch --help', () => {
  it("serve's help shows the library's defaults, by mode where they differ", async () => {
    const r = await runCliToEnd(['serve', '--help']);
    expect(r.code).toBe(0);
    // A flag's entry: its line and the continuation lines under it (those without a flag of their own).
    const line = (flag: string): string => {
      const [first, ...rest] = r.output.slice(r.output.indexOf(`--${flag} `)).split('\n');
      const more = rest.slice(0, Math.max(0, rest.findIndex((l) => /^\s+(-\w, )?--/.test(l) || !/^\s/.test(l))));
      return [first, ...more].join(' ').replace(/\s+/g, ' ');
    };
    expect(line('idle-timeout')).toContain(`(default ${showDuration(SERVER_DEFAULTS.idleTimeoutMs)})`);
    expect(line('max-connections')).toContain(`(default ${SERVER_DEFAULTS.maxConnections})`);
    expect(line('relay-max-bytes')).toContain(`(default ${showBytes(relayDefaults('open').maxBytesPerSession)} open, none with a secret; 0 = none)`);
    expect(line('relay-max-duration')).toContain(`(default ${showDuration(relayDefaults('open').maxDurationMs)} open, none with a secret; 0 = none)`);
    expect(line('relay-idle-timeout')).toContain(`(default ${showDuration(relayDefaults('secret').idleTimeoutMs)}; 0 = none)`);
    expect(line('relay-join-timeout')).toContain(`(default ${showDuration(RELAY_DEFAULTS.joinTimeoutMs)})`);
  });
});

describe('tcp-punch bad config files', () => {
  const config = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('exit 2 naming the file, key and value; nothing registers', async () => {
    const server = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', '0', '--no-probe']);
    const port = (await server.waitFor('listening')).port as number;
    const cases: [string[], RegExp][] = [
      [['serve', '--config', config('a.toml', 'prot = 7770\n')], /a\.toml: prot: unknown key/],
      [['serve', '--config', config('b.toml', 'relay-max-bytes = "lots"\n')], /b\.toml: relay-max-bytes: expected a size .*got "lots"/],
      [['serve', '--config', config('c.toml', 'no-relay = 1\n')], /c\.toml: no-relay: expected true or false, got 1/],
      [['serve', '--config', join(dir, 'missing.toml')], /--config: cannot read .*missing\.toml/],
      [
        ['expose', '--server', `127.0.0.1:${port}`, '--config', config('d.toml', '[[service]]\nname = "a"\nto = "127.0.0.1:1"\n[[service]]\nname = "a"\nto = "127.0.0.1:2"\n')],
        /d\.toml: service\[1\]\.name: duplicate service name "a"/,
      ],
      [['connect', '--server', `127.0.0.1:${port}`, '--config', config('e.toml', '[[map]]\nlisten = "0"\npeer = "a"\npool = "many"\n')], /e\.toml: map\[0\]\.pool: expected an integer/],
    ];
    for (const [args, message] of cases) {
      const r = await runCliToEnd(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.output, args.join(' ')).toMatch(message);
      expect(r.output).not.toMatch(/registered|listening/);
    }
    expect(await server.stop()).toBe(0);
  });
});
