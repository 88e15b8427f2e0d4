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
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const BYTES = arg('bytes', 256) * 2 ** 20;
const RUNS = arg('runs', 1);
const TICK_S = 0.01; // USER_HZ is 100 on Linux

/** utime + stime of a process, all threads, in seconds. */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_S;
}

/** Runs the CLI; resolves once it logged `event`, with the event. */
function cli(args, event) {
  const child = spawn(process.execPath, [MAIN, args[0], '--json', ...args.slice(1)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    child.stdout.resume();
    lines.on('line', (line) => {
      try {
        const e = JSON.parse(line);
        if (e.event === event) resolve({ child, event: e });
      } catch {
        /* not a log line */
      }
    });
    child.once('exit', (code) => reject(new Error(`tcp-punch ${args[0]} exited (${code})`)));
  });
}

/** A sink service: counts bytes, resolves `done` when a connection delivered `bytes`. */
async function sink() {
  let waiter;
  const server = net.createServer((s) => {
    let n = 0;
    s.on('data', (d) => {
      n += d.length;
      if (n >= BYTES) waiter?.(), s.destroy();
    });
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: server.address().port, server, done: () => new Promise((r) => (waiter = r)) };
}

/** Sends BYTES through the tunnel's local port; resolves the seconds it took to reach the service. */
async function push(port, service) {
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const delivered = service.done();
  const started = process.hrtime.bigint();
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  await once(s, 'connect');
  for (let sent = 0; sent < BYTES; sent += chunk.length) if (!s.write(chunk)) await once(s, 'drain');
  await delivered;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  s.destroy();
  return seconds;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const service = await sink();
  const port = await new Promise((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => (r(s.address().port), s.close()));
  });
  const common = ['--no-probe', '--server', `127.0.0.1:${port}`, '--secret', 'bench'];
  const server = await cli(['serve', '--host', '127.0.0.1', '--port', String(port), '--no-probe', '--secret', 'bench', '--relay-max-bytes', '0'], 'listening');
  const rows = [];
  try {
    for (const [mode, keyArgs] of [['zero-copy', []], ['encrypted', ['--key', 'bench-key']]]) {
      const id = `svc-${mode}`;
      const exposer = await cli(['expose', ...common, '--id', id, '--to', `127.0.0.1:${service.port}`, ...keyArgs], 'exposing');
      for (const strategy of ['direct', 'relay']) {
        const connector = await cli(['connect', ...common, '--peer', id, '--listen', '127.0.0.1:0', '--strategy', strategy, ...keyArgs], 'listening');
        const local = connector.event.port;
        const rates = [];
        const cpu = { connect: [], expose: [], relay: [] };
        for (let run = 0; run < RUNS; run++) {
          const pids = { connect: connector.child.pid, expose: exposer.child.pid, relay: server.child.pid };
          const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuOf(pid)]));
          const seconds = await push(local, service);
          const gb = BYTES / 1e9;
          rates.push(BYTES / 2 ** 20 / seconds);
          for (const [k, pid] of Object.entries(pids)) cpu[k].push((cpuOf(pid) - before[k]) / gb);
        }
        rows.push({
          path: strategy,
          mode,
          'MiB/s': Math.round(median(rates)),
          'connect CPU-s/GB': median(cpu.connect).toFixed(2),
          'expose CPU-s/GB': median(cpu.expose).toFixed(2),
          'relay CPU-s/GB': strategy === 'relay' ? median(cpu.relay).toFixed(2) : '-',
        });
        connector.child.kill('SIGTERM');
        await once(connector.child, 'exit');
      }
      exposer.child.kill('SIGTERM');
      await once(exposer.child, 'exit');
    }
  } finally {
    server.child.kill('SIGTERM');
    service.server.close();
  }
  console.log(`tunnel throughput on loopback, ${BYTES / 2 ** 20} MiB per row, median of ${RUNS} run(s), node ${process.version}`);
  console.table(rows);
  console.log(JSON.stringify({ bytes: BYTES, runs: RUNS, rows }));
}

await main();
