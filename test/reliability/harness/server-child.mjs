// @ts-check
// The rendezvous server (with its built-in relay) in a process of its own, so that its memory and descriptors are
// measured apart from the attackers and the peers. Runs the compiled library (dist/, built by test/global-setup.ts).
//
//   node server-child.mjs '<json { options }>'
//
// To the parent: { type: 'ready', port } once listening, { type: 'fatal', code, message } if it cannot.
// From the parent (each answered with the same seq):
//   { type: 'stats', seq }  -> { stats, rss, heapUsed, external, fds, peakRss, peakFds, registry, relayEnds, relayPairs }
//   { type: 'gc', seq }     -> a full garbage collection (the child runs with --expose-gc)
//   { type: 'reset-peak', seq }
//   { type: 'close', seq }  -> graceful close(), answers { closed: ms }, then exits
import { readdirSync } from 'node:fs';

const { startServer } = await import('../../../dist/index.js');

const { options = {} } = JSON.parse(process.argv[2] ?? '{}');
const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};
const fds = () => readdirSync('/proc/self/fd').length;

/** @type {import('../../../lib/server/server.js').RendezvousServer} */
let server;
try {
  server = await startServer({ host: '127.0.0.1', ...options });
} catch (err) {
  send({ type: 'fatal', code: /** @type {any} */ (err)?.code ?? null, message: String(/** @type {any} */ (err)?.message ?? err) });
  process.exit(1);
}

let peakRss = process.memoryUsage().rss;
let peakFds = fds();
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  peakFds = Math.max(peakFds, fds());
}, 50);
sampler.unref();

const relayEnds = /** @type {Record<string, number>} */ ({});
server.relay?.on('session-end', (e) => (relayEnds[e.reason] = (relayEnds[e.reason] ?? 0) + 1));
// Who the relay connected to whom: the evidence that it only ever pairs the two peers a grant names.
const relayPairs = /** @type {Record<string, number>} */ ({});
server.relay?.on('session', (i) => {
  const key = [i.a, i.b].sort().join('|');
  relayPairs[key] = (relayPairs[key] ?? 0) + 1;
});

process.on('message', async (/** @type {any} */ msg) => {
  const reply = (/** @type {any} */ body) => send({ type: 'reply', seq: msg.seq, ...body });
  switch (msg.type) {
    case 'stats': {
      const m = process.memoryUsage();
      const n = fds();
      peakRss = Math.max(peakRss, m.rss);
      peakFds = Math.max(peakFds, n);
      const registry = /** @type {any} */ (server).registry;
      return reply({
        stats: server.stats(),
        rss: m.rss,
        heapUsed: m.heapUsed,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
        fds: n,
        peakRss,
        peakFds,
        registry: typeof registry?.size === 'number' ? registry.size : null,
        relayEnds,
        relayPairs,
      });
    }
    case 'gc': {
      /** @type {any} */ (globalThis).gc?.();
      return reply({});
    }
    case 'reset-peak':
      peakRss = process.memoryUsage().rss;
      peakFds = fds();
      return reply({});
    case 'close': {
      const t0 = performance.now();
      await server.close();
      reply({ closed: performance.now() - t0 });
      setTimeout(() => process.exit(0), 50);
      return;
    }
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', port: server.address().port });
