/**
 * The CLI in cluster mode: `serve --cluster` with Redis unreachable exits 3 naming Redis; cluster flags without
 * `--cluster` exit 2; two `serve --cluster` nodes on a real redis-server carry a tunnel whose `expose` registered
 * with a server list (`--server a,b`) and whose `connect` dials from the other node.
 */
import { once } from 'node:events';
import { connect, type AddressInfo, type Server } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli, runCliToEnd, type CliProcess } from '../helpers/cli.js';
import { closeServer, listen } from '../helpers/net.js';
import { TestRedis, freePort, redisMissing } from '../helpers/redis.js';

const SECRET = 'cli-cluster-secret-0123456789';

describe('serve --cluster mistakes', () => {
  it('exits 3 with a clear error when Redis cannot be reached', async () => {
    const port = await freePort();
    const r = await runCliToEnd(['serve', '--host', '127.0.0.1', '--port', '0', '--no-probe', '--secret', SECRET, '--cluster', `redis://:pw@127.0.0.1:${port}`]);
    expect(r.code).toBe(3);
    expect(r.output).toContain('cannot reach Redis');
    expect(r.output).not.toContain(':pw@');
  }, 20_000);

  it('exits 2 on cluster flags without --cluster, and on a bad URL', async () => {
    const a = await runCliToEnd(['serve', '--port', '0', '--no-probe', '--node-id', 'n1']);
    expect(a.code).toBe(2);
    expect(a.output).toContain('--node-id');
    const b = await runCliToEnd(['serve', '--port', '0', '--no-probe', '--secret', SECRET, '--cluster', 'http://x']);
    expect(b.code).toBe(2);
    expect(b.output).toContain('--cluster');
  });
});

describe.skipIf(redisMissing)(`two serve --cluster nodes (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let echo: Server;
  const procs: CliProcess[] = [];
  const ports: number[] = [];

  beforeAll(async () => {
    redis = await TestRedis.start();
    echo = await listen((s) => s.pipe(s));
    for (const nodeId of ['c1', 'c2']) {
      const p = runCli(['serve', '--json', '--host', '127.0.0.1', '--port', '0', '--no-probe', '--secret', SECRET, '--cluster', redis.url, '--node-id', nodeId]);
      procs.push(p);
      ports.push((await p.waitFor('listening')).port as number);
      expect(await p.waitFor('cluster')).toMatchObject({ nodeId });
    }
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await closeServer(echo);
    await redis?.stop();
  });

  it('carries a tunnel between peers on different nodes', async () => {
    const exposer = runCli([
      'expose', '--json', '--server', `127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`, '--secret', SECRET, '--id', 'echo',
      '--to', `127.0.0.1:${(echo.address() as AddressInfo).port}`, '--no-probe',
    ]);
    procs.push(exposer);
    await exposer.waitFor('exposing');
    const connector = runCli([
      'connect', '--json', '--server', `127.0.0.1:${ports[1]}`, '--secret', SECRET, '--peer', 'echo',
      '--listen', '127.0.0.1:0', '--strategy', 'direct', '--no-probe',
    ]);
    procs.push(connector);
    const localPort = (await connector.waitFor('listening')).port as number;
    const socket = connect({ host: '127.0.0.1', port: localPort });
    await once(socket, 'connect');
    socket.write('ping across nodes');
    const [data] = (await once(socket, 'data')) as [Buffer];
    expect(data.toString()).toBe('ping across nodes');
    socket.destroy();
    expect(await connector.waitFor('tunnel-open')).toMatchObject({ peerId: 'echo', path: 'direct' });
  }, 60_000);
});
