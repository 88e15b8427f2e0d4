// @ts-check
/**
 * One end of the Node-socket throughput test, in a process of its own. The sockets are made either the plain
 * way (net.createServer / net.connect) or by tcp-punch (bindReusable + punch from both ends at once); after that
 * the same sender and receiver code runs on them, so any difference is the socket, not the test.
 *
 *   → { type: 'prepare', mode: 'listen' | 'connect' | 'punch', streams }     ← { type: 'prepare:ok', ports }
 *   → { type: 'connect', peerPorts }                                         ← { type: 'connect:ok', via, elapsedMs }
 *   → { type: 'go', role: 'send' | 'recv', seconds }                         ← { type: 'go:ok', bytes, seconds, cpu }
 *
 * The sender writes a 128 KiB buffer as fast as the socket drains, for `seconds`, then ends; the receiver counts
 * bytes from the first byte to the last end-of-stream.
 */
import net from 'node:net';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { importDist } from './common.mjs';
import { serve } from './child.mjs';

const { bindReusable, punchDetailed } = await importDist('index.js');
const CHUNK = Buffer.alloc(128 * 1024, 0x5a);

/** @type {net.Socket[]} */
let sockets = [];
/** @type {net.Server | null} */
let server = null;
/** @type {any[]} */
let held = [];
let mode = '';
let streams = 1;

serve({
  prepare: async (m) => ({ ports: await prepare(m.mode, m.streams) }),
  connect: (m) => connect(m.peerPorts),
  go: (m) => (m.role === 'send' ? sender(m.seconds) : receiver()),
});

/** @param {string} how @param {number} n @returns {Promise<number[]>} */
async function prepare(how, n) {
  mode = how;
  streams = n;
  if (how === 'listen') {
    server = net.createServer({ noDelay: true });
    server.listen({ host: '127.0.0.1', port: 0 });
    await once(server, 'listening');
    return [/** @type {net.AddressInfo} */ (server.address()).port];
  }
  if (how === 'punch') {
    held = await Promise.all(Array.from({ length: n }, () => bindReusable({ address: '127.0.0.1' })));
    return held.map((p) => p.port);
  }
  return [];
}

/** @param {number[]} peerPorts */
async function connect(peerPorts) {
  const t0 = performance.now();
  /** @type {string[]} */
  let via = [];
  if (mode === 'listen') {
    const srv = /** @type {net.Server} */ (server);
    sockets = await new Promise((resolve) => {
      /** @type {net.Socket[]} */
      const got = [];
      const onConn = (/** @type {net.Socket} */ s) => {
        got.push(s);
        if (got.length === streams) {
          srv.off('connection', onConn);
          resolve(got);
        }
      };
      srv.on('connection', onConn);
    });
    srv.close();
    via = sockets.map(() => 'accept');
  } else if (mode === 'connect') {
    sockets = await Promise.all(
      Array.from({ length: streams }, async () => {
        const s = net.connect({ host: '127.0.0.1', port: peerPorts[0], noDelay: true });
        await once(s, 'connect');
        return s;
      }),
    );
    via = sockets.map(() => 'connect');
  } else {
    const results = await Promise.all(
      held.map((port, i) => punchDetailed({ port, remote: { host: '127.0.0.1', port: peerPorts[i] }, timeoutMs: 10_000 })),
    );
    sockets = results.map((r) => r.socket);
    via = results.map((r) => r.via);
    for (const p of held) p.close();
  }
  for (const s of sockets) s.setNoDelay(true);
  return { via, elapsedMs: performance.now() - t0 };
}

/** @param {number} seconds */
async function sender(seconds) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let bytes = 0;
  await Promise.all(
    sockets.map(async (s) => {
      let n = 0;
      while (performance.now() < deadline && !s.destroyed) {
        bytes += CHUNK.length;
        if (!s.write(CHUNK)) await once(s, 'drain');
        else if (++n % 16 === 0) await new Promise(setImmediate); // let the other streams and timers run
      }
      s.end();
      if (!s.destroyed) await once(s, 'close');
    }),
  );
  const cpu = process.cpuUsage(c0);
  return { bytes, seconds: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
}

async function receiver() {
  const c0 = process.cpuUsage();
  let bytes = 0;
  let first = Infinity;
  let last = 0;
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise((resolve, reject) => {
          s.on('data', (chunk) => {
            if (bytes === 0) first = performance.now();
            bytes += chunk.length;
          });
          s.once('end', () => {
            last = Math.max(last, performance.now());
            s.end();
          });
          s.once('close', resolve);
          s.once('error', reject);
        }),
    ),
  );
  const cpu = process.cpuUsage(c0);
  return { bytes, seconds: (last - first) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
}
