// @ts-check
/**
 * Many Peers in one process, for the rendezvous part of the scale benchmark.
 *
 *   → { type: 'register', server, secret, prefix, count, concurrency, seconds }
 *   ← { type: 'register:ok', ok, failed, seconds, codes }
 *   → { type: 'dial', pairs, count, concurrency, seconds }  (peer 2i dials peer 2i+1; sockets closed at once)
 *   ← { type: 'dial:ok', ok, failed, seconds, codes }
 *   → { type: 'close' }                                      ← { type: 'close:ok' }
 */
import { importDist } from './common.mjs';
import { pool, serve } from './child.mjs';

const { Peer } = await importDist('index.js');
/** @type {any[]} */
let peers = [];

serve({
  register: (/** @type {{ server: string, secret: string, prefix: string, count: number, concurrency: number, seconds: number }} */ m) => {
    let i = 0;
    return pool(m, async () => {
      const peer = await Peer.connect({ server: m.server, id: `${m.prefix}${i++}`, secret: m.secret, reconnect: false, connectTimeoutMs: 20_000 });
      peer.on('error', () => {});
      peer.on('connection', (/** @type {import('node:net').Socket} */ s) => s.on('error', () => {}).destroy());
      peers.push(peer);
    });
  },
  dial: (/** @type {{ pairs: number, count: number, concurrency: number, seconds: number }} */ m) => {
    const pairs = Math.min(m.pairs, Math.floor(peers.length / 2));
    if (pairs === 0) throw new Error('no registered peers to dial between');
    let k = 0;
    return pool(m, async () => {
      const i = k++ % pairs;
      const r = await peers[2 * i].dial(peers[2 * i + 1].id, { timeoutMs: 10_000 });
      r.socket.on('error', () => {}).destroy();
    });
  },
  close: async () => {
    await Promise.all(peers.map((p) => p.close().catch(() => {})));
    peers = [];
  },
});
