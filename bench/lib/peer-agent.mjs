// @ts-check
/**
 * A peer of the connect-time benchmark in a process of its own: on loopback (forked) or inside a NAT-lab
 * namespace (lab.fork). Two modes, driven over IPC:
 *
 * Raw punch (no rendezvous server): the agent learns its public mapping the way a rendezvous client does (a
 * connection from its reusable port to lab-observer.mjs, which answers "ip:port"), then punches when told, so that
 * both sides start at the same moment.
 *   → { type: 'observe', server: { host, port } }   ← { type: 'observe:ok', local, observed, rttMs }
 *   → { type: 'punch', remote, role: 'a' | 'b', timeoutMs }
 *   ← { type: 'punch:ok', ok, ms, firstByteMs, via, attempts, code? }
 *   Role b writes one byte as soon as its punch resolves; role a reports dial → first byte.
 *
 * Peer (rendezvous server and Peer.dial):
 *   → { type: 'peer', server, id, secret }  ← { type: 'peer:ok', ms }   (Peer.connect; the agent then writes one
 *      byte on every incoming connection)
 *   → { type: 'dial', target, strategy, timeoutMs }
 *   ← { type: 'dial:ok', ok, ms, firstByteMs, path, mode, attempt, timings, code? }
 */
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { importDist } from './common.mjs';
import { firstByte, serve } from './child.mjs';

const pkg = await importDist('index.js');

/** @type {any} */
let port = null;
/** @type {import('node:net').Socket | null} */
let control = null;
/** @type {import('node:net').Socket[]} */
let open = [];
/** @type {any} */
let peer = null;

serve({
  observe: (m) => observe(m.server),
  punch: (m) => doPunch(m.remote, m.role, m.timeoutMs),
  peer: connectPeer,
  dial: (m) => dial(m.target, m.strategy, m.timeoutMs),
  'close-sockets': () => closeSockets(),
});

function closeSockets() {
  for (const s of open) s.destroy();
  open = [];
}

/**
 * The ms from t0 to the first byte on s, or null when none comes within timeoutMs.
 * @param {import('node:net').Socket} s @param {number} t0 @param {number} timeoutMs
 */
const firstByteMs = (s, t0, timeoutMs) => firstByte(s, timeoutMs).then((t) => t - t0, () => null);

// ------------------------------------------------------------------ raw punch

/** @param {{ host: string, port: number }} server */
async function observe(server) {
  closeSockets();
  control?.destroy();
  port?.close();
  port = await pkg.bindReusable({ listen: true });
  const t0 = performance.now();
  control = /** @type {import('node:net').Socket} */ (await port.connect(server, { timeoutMs: 5000 }));
  const rttMs = performance.now() - t0; // connect() completes after one round trip
  control.on('error', () => {});
  let text = '';
  while (!text.includes('\n')) {
    const [chunk] = await once(control, 'data');
    text += chunk.toString('utf8');
  }
  const [host, p] = text.trim().split(/:(?=\d+$)/);
  return { local: port.local, observed: { host, port: Number(p) }, rttMs };
}

/** @param {{ host: string, port: number }} remote @param {'a' | 'b'} role @param {number} timeoutMs */
async function doPunch(remote, role, timeoutMs) {
  const t0 = performance.now();
  let r;
  try {
    r = await pkg.punchDetailed({ port, remote, timeoutMs });
  } catch (e) {
    const err = /** @type {any} */ (e);
    return { ok: false, code: err.code, attempts: err.attempts, ms: performance.now() - t0 };
  }
  const ms = performance.now() - t0;
  const s = /** @type {import('node:net').Socket} */ (r.socket);
  s.on('error', () => {});
  open.push(s);
  if (role === 'b') {
    s.write(Buffer.of(1));
    return { ok: true, ms, via: r.via, attempts: r.attempts };
  }
  const fb = await firstByteMs(s, t0, timeoutMs);
  return { ok: fb !== null, ms, firstByteMs: fb, via: r.via, attempts: r.attempts, code: fb === null ? 'NO_BYTE' : undefined };
}

// ------------------------------------------------------------------ Peer

/**
 * @param {{ server: string, id: string, secret: string }} m
 */
async function connectPeer(m) {
  const t0 = performance.now();
  peer = await pkg.Peer.connect({ server: m.server, id: m.id, secret: m.secret, reconnect: false });
  peer.on('connection', (/** @type {import('node:net').Socket} */ s) => {
    s.on('error', () => {});
    open.push(s);
    s.write(Buffer.of(1));
  });
  peer.on('error', () => {});
  return { ms: performance.now() - t0 };
}

/** @param {string} target @param {string} strategy @param {number} timeoutMs */
async function dial(target, strategy, timeoutMs) {
  const t0 = performance.now();
  let r;
  try {
    r = await peer.dial(target, { strategy, timeoutMs });
  } catch (e) {
    const err = /** @type {any} */ (e);
    return { ok: false, code: err.code ?? 'ERROR', message: err.message, ms: performance.now() - t0 };
  }
  const ms = performance.now() - t0;
  const s = /** @type {import('node:net').Socket} */ (r.socket);
  s.on('error', () => {});
  open.push(s);
  const fb = await firstByteMs(s, t0, timeoutMs);
  return {
    ok: fb !== null,
    ms,
    firstByteMs: fb,
    path: r.path,
    mode: r.mode,
    attempt: r.attempt,
    timings: r.timings,
    code: fb === null ? 'NO_BYTE' : undefined,
  };
}
