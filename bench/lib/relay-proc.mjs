// @ts-check
/**
 * The benchmark relay: a process of its own (so its CPU time can be read apart from the traffic endpoints) that
 * accepts clients on 127.0.0.1, connects each to the upstream endpoint and moves bytes between the two sockets
 * with the chosen pump (see pumps.mjs). Driven over IPC:
 *
 *   → { type: 'listen', pump: 'native' | 'native-copy' | 'js' | 'pipe', upstream: { host, port }, backlog?, config? }
 *     (config: configureNativePump() options, e.g. { maxPipes, pipeSize })
 *   ← { type: 'listen:ok', port, available, note? }
 *   → { type: 'listen-service', pump: 'native' | 'js', secret, limits? }   ← { type: 'listen-service:ok', port, available, note? }
 *     (tcp-punch's RelayService behind listenRelay: clients join with tokens and are paired, nothing upstream)
 *   → { type: 'stats', gc? }   (gc: collect garbage first; the relay runs with --expose-gc)
 *   ← { type: 'stats:ok', cpu: { user, system } (µs, process.cpuUsage(): every thread), rss, open, total, failed, pump }
 *
 * It exits when the IPC channel closes (the parent ended) or on SIGTERM.
 */
import net from 'node:net';
import { importDist } from './common.mjs';
import { loadPump } from './pumps.mjs';

/** @type {import('./pumps.mjs').Pump | null} */
let pump = null;
let open = 0;
let total = 0;
let failed = 0;

/** @param {any} m */
const send = (m) => process.send?.(m);

process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));

/** @type {any} tcp-punch's RelayService, in `listen-service` mode */
let service = null;

process.on('message', async (/** @type {any} */ m) => {
  try {
    if (m.type === 'listen') await listen(m);
    else if (m.type === 'listen-service') await listenService(m);
    else if (m.type === 'stats') {
      if (m.gc) globalThis.gc?.();
      const st = service?.stats();
      send({
        type: 'stats:ok',
        cpu: process.cpuUsage(),
        rss: process.memoryUsage.rss(),
        heapUsed: process.memoryUsage().heapUsed,
        open: st ? st.pending + st.active : open,
        total: st ? st.started : total,
        failed,
        pump: st ? st.pump : (pump?.stats?.() ?? null),
        service: st ?? null,
      });
    }
  } catch (e) {
    const err = /** @type {NodeJS.ErrnoException} */ (e);
    send({ type: 'error', message: err.stack ?? String(err), code: err.code });
  }
});

/**
 * @param {{ pump: 'native' | 'native-copy' | 'js' | 'pipe', upstream: { host: string, port: number }, backlog?: number,
 *   config?: Record<string, number> }} m
 */
async function listen(m) {
  pump = await loadPump(m.pump, m.config);
  if (!pump.available) {
    send({ type: 'listen:ok', port: 0, available: false, note: pump.note });
    return;
  }
  const p = pump;
  const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (client) => {
    open++;
    total++;
    const up = net.connect({ host: m.upstream.host, port: m.upstream.port, noDelay: true });
    const fail = () => {
      failed++;
      open--;
      client.destroy();
      up.destroy();
    };
    up.once('error', fail);
    client.once('error', () => up.destroy());
    up.once('connect', () => {
      up.off('error', fail);
      up.pause();
      p.start(client, up).done.then(
        () => open--,
        () => open--,
      );
    });
  });
  server.on('error', (err) => send({ type: 'error', message: err.message, code: /** @type {any} */ (err).code }));
  await new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: m.backlog ?? 4096 }, () => resolve(undefined)));
  const addr = /** @type {net.AddressInfo} */ (server.address());
  send({ type: 'listen:ok', port: addr.port, available: true, note: p.note });
}

/**
 * tcp-punch's own relay service on a port of its own (RelayService + listenRelay): clients join with tokens signed
 * with `secret` and are paired, then pumped.
 * @param {{ pump: 'native' | 'js', secret: string, limits?: Record<string, number> }} m
 */
async function listenService(m) {
  const relay = await importDist('relay/index.js');
  if (m.pump === 'native' && !relay.nativePump) {
    send({ type: 'listen-service:ok', port: 0, available: false, note: 'the addon has no native pump' });
    return;
  }
  service = new relay.RelayService({ secret: m.secret, pump: m.pump, limits: m.limits });
  const listener = await relay.listenRelay(service, { host: '127.0.0.1' });
  send({ type: 'listen-service:ok', port: listener.address().port, available: true });
}
