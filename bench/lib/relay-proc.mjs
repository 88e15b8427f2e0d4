// @ts-check
/**
 * The benchmark relay: a process of its own (so its CPU time can be read apart from the traffic endpoints) that
 * accepts clients on 127.0.0.1, connects each to the upstream endpoint and moves bytes between the two sockets
 * with one of the pumps:
 *
 * - `pipe`: Node streams, `a.pipe(b); b.pipe(a)` (what a user writes by hand; a baseline, not tcp-punch code);
 * - `js`: tcp-punch's pure-JS pump (`jsPump`);
 * - `native`: tcp-punch's native splice pump (`nativePump`); `native-copy` the same with splice off.
 *
 *   → { type: 'listen', pump, upstream: { host, port } }   ← { type: 'listen:ok', port, available, note? }
 *   → { type: 'listen-service', pump: 'native' | 'js', secret, limits? }   ← { type: 'listen-service:ok', port, available, note? }
 *     (tcp-punch's RelayService behind listenRelay: clients join with tokens and are paired, nothing upstream)
 *   → { type: 'stats', gc? }   (gc: collect garbage first; the relay runs with --expose-gc)
 *   ← { type: 'stats:ok', cpu: { user, system } (µs, process.cpuUsage(): every thread), rss, heapUsed, open, pump }
 */
import net from 'node:net';
import { once } from 'node:events';
import { importDist } from './common.mjs';
import { serve } from './child.mjs';

process.on('SIGTERM', () => process.exit(0));

/** @type {any} the pump of `listen` mode */
let pump = null;
/** @type {any} tcp-punch's RelayService, in `listen-service` mode */
let service = null;
let open = 0;

serve({
  listen: async (/** @type {{ pump: string, upstream: { host: string, port: number } }} */ m) => {
    const start = await loadPump(m.pump);
    if (!start) return { port: 0, available: false, note: 'the loaded addon has no pump' };
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (client) => {
      open++;
      const up = net.connect({ ...m.upstream, noDelay: true });
      const fail = () => {
        open--;
        client.destroy();
        up.destroy();
      };
      up.once('error', fail);
      client.once('error', () => up.destroy());
      up.once('connect', () => {
        up.off('error', fail);
        up.pause();
        const done = () => void open--;
        start(client, up).then(done, done);
      });
    });
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 });
    await once(server, 'listening');
    return { port: /** @type {net.AddressInfo} */ (server.address()).port, available: true };
  },
  'listen-service': async (/** @type {{ pump: 'native' | 'js', secret: string, limits?: Record<string, number> }} */ m) => {
    const relay = await importDist('relay/index.js');
    if (m.pump === 'native' && !relay.nativePump) return { port: 0, available: false, note: 'the addon has no native pump' };
    service = new relay.RelayService({ secret: m.secret, pump: m.pump, limits: m.limits });
    const listener = await relay.listenRelay(service, { host: '127.0.0.1' });
    return { port: listener.address().port, available: true };
  },
  stats: (/** @type {{ gc?: boolean }} */ m) => {
    if (m.gc) globalThis.gc?.();
    const st = service?.stats();
    return {
      cpu: process.cpuUsage(),
      rss: process.memoryUsage.rss(),
      heapUsed: process.memoryUsage().heapUsed,
      open: st ? st.pending + st.active : open,
      pump: st ? st.pump : (pump?.stats() ?? null),
    };
  },
});

/**
 * The pump of `kind` as a function of two connected, paused sockets that settles when both are done; null when
 * the addon has no such pump.
 * @param {string} kind
 * @returns {Promise<((a: net.Socket, b: net.Socket) => Promise<unknown>) | null>}
 */
async function loadPump(kind) {
  if (kind === 'pipe') return pipePump;
  const mod = await importDist('relay/pump.js');
  pump = kind === 'js' ? mod.jsPump : mod.nativePump;
  if (!pump) return null;
  const startOptions = kind === 'native-copy' ? { splice: false } : {};
  return (a, b) => {
    const session = pump.start(a, b, startOptions);
    // The relay hands sockets over paused (nothing may be read into JS before the native pump dups the fds);
    // the JS pump reads with 'data' listeners, which do not restart a socket that was paused explicitly.
    if (kind === 'js') for (const s of [a, b]) if (!s.destroyed) s.resume();
    return session.done;
  };
}

/** The stream-pipe baseline. @param {net.Socket} a @param {net.Socket} b */
function pipePump(a, b) {
  a.pipe(b);
  b.pipe(a);
  for (const s of [a, b]) s.on('error', () => (a.destroy(), b.destroy())).resume();
  return Promise.all([a, b].map((s) => (s.destroyed ? undefined : once(s, 'close'))));
}
