// @ts-check
/**
 * Many Peers in one process, for the rendezvous part of the scale benchmark.
 *
 *   → { type: 'register', server, secret, prefix, count, concurrency, seconds }
 *   ← { type: 'register:ok', ok, failed, seconds, codes }
 *   → { type: 'dial', pairs, total, concurrency, seconds }  (peer 2i dials peer 2i+1; sockets closed at once)
 *   ← { type: 'dial:ok', ok, failed, seconds, codes }
 *   → { type: 'close' }                                      ← { type: 'close:ok' }
 *
 * Exits when the IPC channel closes.
 */
import { performance } from 'node:perf_hooks';
import { importDist } from './common.mjs';

/** @type {any[]} */
let peers = [];

/** @param {any} m */
const send = (m) => process.send?.(m);
process.on('disconnect', () => process.exit(0));

process.on('message', async (/** @type {any} */ m) => {
  try {
    if (m.type === 'register') send({ type: 'register:ok', ...(await register(m)) });
    else if (m.type === 'dial') send({ type: 'dial:ok', ...(await dialLoop(m)) });
    else if (m.type === 'close') {
      await Promise.all(peers.map((p) => p.close().catch(() => {})));
      peers = [];
      send({ type: 'close:ok' });
    }
  } catch (e) {
    const err = /** @type {NodeJS.ErrnoException} */ (e);
    send({ type: 'error', message: err.stack ?? String(err), code: err.code });
  }
});

/**
 * @param {() => Promise<void>} op @param {number} count @param {number} concurrency @param {number} seconds
 */
async function pool(op, count, concurrency, seconds) {
  const t0 = performance.now();
  const deadline = Date.now() + seconds * 1000;
  let started = 0;
  let ok = 0;
  let failed = 0;
  /** @type {Record<string, number>} */
  const codes = {};
  const worker = async () => {
    while (started < count && Date.now() < deadline) {
      started++;
      try {
        await op();
        ok++;
      } catch (e) {
        failed++;
        const c = /** @type {any} */ (e).code ?? 'ERROR';
        codes[c] = (codes[c] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  return { ok, failed, seconds: (performance.now() - t0) / 1000, codes };
}

/** @param {{ server: string, secret: string, prefix: string, count: number, concurrency: number, seconds: number }} m */
async function register(m) {
  const pkg = await importDist('index.js');
  const Peer = pkg.Peer ?? (await importDist('peer/index.js'))?.Peer;
  let i = 0;
  return pool(
    async () => {
      const id = `${m.prefix}${i++}`;
      const peer = await Peer.connect({ server: m.server, id, secret: m.secret, reconnect: false, connectTimeoutMs: 20_000 });
      peer.on('error', () => {});
      peer.on('connection', (/** @type {import('node:net').Socket} */ s) => {
        s.on('error', () => {});
        s.destroy();
      });
      peers.push(peer);
    },
    m.count,
    m.concurrency,
    m.seconds,
  );
}

/** @param {{ pairs: number, total: number, concurrency: number, seconds: number }} m */
async function dialLoop(m) {
  const pairs = Math.min(m.pairs, Math.floor(peers.length / 2));
  if (pairs === 0) throw new Error('no registered peers to dial between');
  let k = 0;
  return pool(
    async () => {
      const i = k++ % pairs;
      const r = await peers[2 * i].dial(peers[2 * i + 1].id, { timeoutMs: 10_000 });
      r.socket.on('error', () => {});
      r.socket.destroy();
    },
    m.total,
    m.concurrency,
    m.seconds,
  );
}
