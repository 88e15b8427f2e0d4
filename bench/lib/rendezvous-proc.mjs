// @ts-check
/**
 * A rendezvous server (tcp-punch's startServer) in a process of its own, for the connect-time and scale
 * benchmarks: on loopback (forked) or in the NAT lab's server namespace (lab.fork).
 *
 *   → { type: 'start', host, secret, options? }  ← { type: 'start:ok', port }
 *   → { type: 'stats', gc? }                     ← { type: 'stats:ok', stats, rss, heapUsed, cpu }
 *     (gc: collect garbage first, when started with --expose-gc)
 *
 * `options` are passed to startServer (the benchmarks raise the per-IP limits: every client comes from one
 * address); the server runs its built-in relay on the same port. Exits when the IPC channel closes.
 */
import { importDist } from './common.mjs';

/** @type {any} */
let server = null;
/** @param {any} m */
const send = (m) => process.send?.(m);
process.on('disconnect', () => process.exit(0));

process.on('message', async (/** @type {any} */ m) => {
  try {
    if (m.type === 'start') {
      const pkg = await importDist('index.js');
      const startServer = pkg.startServer ?? (await importDist('server/index.js'))?.startServer;
      server = await startServer({ host: m.host, port: 0, secret: m.secret, ...(m.options ?? {}) });
      send({ type: 'start:ok', port: server.address().port });
    } else if (m.type === 'stats') {
      if (m.gc) globalThis.gc?.();
      const mem = process.memoryUsage();
      send({ type: 'stats:ok', stats: server?.stats?.() ?? null, rss: mem.rss, heapUsed: mem.heapUsed, cpu: process.cpuUsage() });
    }
  } catch (e) {
    const err = /** @type {NodeJS.ErrnoException} */ (e);
    send({ type: 'error', message: err.stack ?? String(err), code: err.code });
  }
});

