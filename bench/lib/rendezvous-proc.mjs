// @ts-check
/**
 * A rendezvous server (tcp-punch's startServer) in a process of its own, for the connect-time and scale
 * benchmarks: on loopback (forked) or in the NAT lab's server namespace (lab.fork).
 *
 *   → { type: 'start', host, secret, options? }  ← { type: 'start:ok', port }
 *   → { type: 'stats', gc? }                     ← { type: 'stats:ok', stats, rss, heapUsed, cpu }
 *     (gc: collect garbage first, when started with --expose-gc)
 *   → { type: 'profile', file? }  starts the V8 CPU profiler; with `file`, stops it and writes the profile there
 *
 * The server runs with BENCH_SERVER_OPTIONS (plus `options`, passed to startServer) and its built-in relay on
 * the same port.
 */
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';

import { importDist } from './common.mjs';
import { serve } from './child.mjs';
import { SERVICE_LIMITS } from './relays.mjs';

/** Every benchmark client comes from one address: the per-IP limits (the built-in relay's too) are raised. */
const BENCH_SERVER_OPTIONS = {
  maxConnections: 20_000,
  maxConnectionsPerIp: 20_000,
  connectionRatePerIp: 1_000_000,
  connectionBurstPerIp: 1_000_000,
  maxPendingPerPeer: 4096,
  maxCoordinations: 16_384,
  frameRate: 100_000,
  frameBurst: 100_000,
  relay: { limits: SERVICE_LIMITS },
};

/** @type {any} */
let server = null;
/** @type {Session | null} */
let profiler = null;

serve({
  start: async (m) => {
    const { startServer } = await importDist('index.js');
    server = await startServer({ host: m.host, port: 0, secret: m.secret, ...BENCH_SERVER_OPTIONS, ...(m.options ?? {}) });
    return { port: server.address().port };
  },
  profile: async (m) => {
    if (!profiler) {
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
    }
    if (!m.file) return void (await profiler.post('Profiler.start'));
    const { profile } = await profiler.post('Profiler.stop');
    fs.writeFileSync(m.file, JSON.stringify(profile));
  },
  stats: (m) => {
    if (m.gc) globalThis.gc?.();
    const mem = process.memoryUsage();
    return { stats: server?.stats?.() ?? null, rss: mem.rss, heapUsed: mem.heapUsed, cpu: process.cpuUsage() };
  },
});
