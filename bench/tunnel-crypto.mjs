// @ts-check
/**
 * What end-to-end encryption costs a tunnel: throughput and CPU per GB at both ends (the `connect` and `expose`
 * processes, all threads, from /proc) of the zero-copy tunnel (no key, or --no-encrypt: the native pump) and the
 * encrypted one (--key: TLS 1.3 with a PSK, bytes through JS), over the punched path and through the relay
 * (whose CPU is shown too), on loopback with the real CLI processes.
 *
 * usage: node bench/tunnel-crypto.mjs [--bytes MiB] [--runs N]   (default 256 MiB per row, 1 run: median of N)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { DIST, procCpuSeconds, summarize } from './lib/common.mjs';
import { freePort } from './lib/relays.mjs';

const { values } = parseArgs({ options: { bytes: { type: 'string', default: '256' }, runs: { type: 'string', default: '1' } } });
const BYTES = Number(values.bytes) * 2 ** 20;
const RUNS = Number(values.runs);

/** utime + stime of a process, all threads, in seconds. @param {number} pid */
const cpuOf = (pid) => procCpuSeconds(pid)?.self ?? NaN;
/** @param {number[]} xs */
const median = (xs) => summarize(xs)?.median ?? NaN;

/**
 * Runs the CLI; resolves once it logged `event`, with the event.
 * @param {string[]} args @param {string} event @returns {Promise<{ child: import('node:child_process').ChildProcess, event: any }>}
 */
function cli(args, event) {
  const child = spawn(process.execPath, [path.join(DIST, 'cli', 'main.js'), args[0], '--json', ...args.slice(1)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    child.stdout.resume();
    createInterface({ input: child.stderr }).on('line', (line) => {
      try {
        const e = JSON.parse(line);
        if (e.event === event) resolve({ child, event: e });
      } catch {} // not a log line
    });
    child.once('exit', (code) => reject(new Error(`tcp-punch ${args[0]} exited (${code})`)));
  });
}

/** @param {import('node:child_process').ChildProcess} child */
async function stop(child) {
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/** A sink service: counts bytes, resolves `done()` when a connection delivered BYTES. */
async function sink() {
  /** @type {(() => void) | undefined} */
  let waiter;
  const server = net.createServer((s) => {
    let n = 0;
    s.on('error', () => {}).on('data', (d) => {
      n += d.length;
      if (n >= BYTES) waiter?.(), s.destroy();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = /** @type {net.AddressInfo} */ (server.address()).port;
  return { port, server, done: () => new Promise((r) => (waiter = () => r(undefined))) };
}

/**
 * Sends BYTES through the tunnel's local port; resolves the seconds it took to reach the service.
 * @param {number} port @param {Awaited<ReturnType<typeof sink>>} service
 */
async function push(port, service) {
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const delivered = service.done();
  const started = performance.now();
  const s = net.connect({ host: '127.0.0.1', port }).on('error', () => {});
  await once(s, 'connect');
  for (let sent = 0; sent < BYTES; sent += chunk.length) if (!s.write(chunk)) await once(s, 'drain');
  await delivered;
  s.destroy();
  return (performance.now() - started) / 1000;
}

const service = await sink();
const port = await freePort();
const common = ['--no-probe', '--server', `127.0.0.1:${port}`, '--secret', 'bench'];
const server = await cli(['serve', '--host', '127.0.0.1', '--port', String(port), '--no-probe', '--secret', 'bench', '--relay-max-bytes', '0'], 'listening');
const rows = [];
try {
  for (const [mode, keyArgs] of /** @type {[string, string[]][]} */ ([['zero-copy', []], ['encrypted', ['--key', 'bench-key']]])) {
    const id = `svc-${mode}`;
    const exposer = await cli(['expose', ...common, '--id', id, '--to', `127.0.0.1:${service.port}`, ...keyArgs], 'exposing');
    for (const strategy of ['direct', 'relay']) {
      const connector = await cli(['connect', ...common, '--peer', id, '--listen', '127.0.0.1:0', '--strategy', strategy, ...keyArgs], 'listening');
      const pids = { connect: connector.child.pid ?? 0, expose: exposer.child.pid ?? 0, relay: server.child.pid ?? 0 };
      const rates = [];
      /** @type {Record<string, number[]>} */
      const cpu = { connect: [], expose: [], relay: [] };
      for (let run = 0; run < RUNS; run++) {
        const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuOf(pid)]));
        const seconds = await push(connector.event.port, service);
        rates.push(BYTES / 2 ** 20 / seconds);
        for (const [k, pid] of Object.entries(pids)) cpu[k].push((cpuOf(pid) - before[k]) / (BYTES / 1e9));
      }
      rows.push({
        path: strategy,
        mode,
        'MiB/s': Math.round(median(rates)),
        'connect CPU-s/GB': median(cpu.connect).toFixed(2),
        'expose CPU-s/GB': median(cpu.expose).toFixed(2),
        'relay CPU-s/GB': strategy === 'relay' ? median(cpu.relay).toFixed(2) : '-',
      });
      await stop(connector.child);
    }
    await stop(exposer.child);
  }
} finally {
  server.child.kill('SIGTERM');
  service.server.close();
}
console.log(`tunnel throughput on loopback, ${BYTES / 2 ** 20} MiB per row, median of ${RUNS} run(s), node ${process.version}`);
console.table(rows);
console.log(JSON.stringify({ bytes: BYTES, runs: RUNS, rows }));
