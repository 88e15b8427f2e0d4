// @ts-check
/**
 * Question 4: what do the JS hot paths cost? Micro-benchmarks with the `benchmark` package (ops/s ± relative
 * margin of error) for the protocol's frame codec, message codec and handshake MACs (dist/protocol), next to the
 * floor they sit on (one node:crypto HMAC-SHA256, Buffer.allocUnsafe).
 *
 * Each case is run once before it is timed: a case whose sample message no longer matches the schema is reported
 * with a note instead of a figure.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fmt, importDist, isMain, log, table as textTable } from './lib/common.mjs';
import { num } from './lib/cli.mjs';

const require = createRequire(import.meta.url);
/** @type {any} */
const Benchmark = require('benchmark');

/**
 * @typedef {object} MicroOptions
 * @property {number} maxTime seconds per case
 */

/** @type {MicroOptions} */
export const DEFAULTS = { maxTime: 1 };
/** @type {MicroOptions} */
export const FULL = { maxTime: 3 };

/** @param {Record<string, any>} flags @param {boolean} full @returns {MicroOptions} */
export function options(flags, full) {
  const d = full ? FULL : DEFAULTS;
  return { maxTime: num(flags['max-time'], d.maxTime, 60) };
}

/**
 * The cases: [group, name, fn].
 * @param {any} p the protocol module
 * @returns {[string, string, () => unknown][]}
 */
function cases(p) {
  const key = randomBytes(32);
  const n16 = randomBytes(16);
  const n32 = randomBytes(32);
  const msg64 = randomBytes(64);
  /** @type {[string, string, () => unknown][]} */
  const list = [
    ['floor', 'node:crypto HMAC-SHA256 of 64 B', () => createHmac('sha256', key).update(msg64).digest()],
    ['floor', 'Buffer.allocUnsafe(70)', () => Buffer.allocUnsafe(70)],
  ];

  const body32 = randomBytes(32);
  const body1k = randomBytes(1024);
  const one = p.encodeFrame(0x05, body32);
  const batch = Buffer.concat(Array.from({ length: 100 }, () => one));
  const [partA, partB] = [one.subarray(0, 3), one.subarray(3)]; // split inside the header
  /** Writes the chunks into a new FrameDecoder, one read after each; returns the last read. @param {Buffer[]} chunks */
  const decode = (...chunks) => {
    const d = new p.FrameDecoder();
    let frame;
    for (const c of chunks) d.write(c), (frame = d.read());
    return frame;
  };
  list.push(
    ['frame', 'encodeFrame, 32 B body', () => p.encodeFrame(0x05, body32)],
    ['frame', 'encodeFrame, 1 KiB body', () => p.encodeFrame(0x05, body1k)],
    ['frame', 'FrameDecoder write + read, 1 frame', () => decode(one)],
    ['frame', 'FrameDecoder, frame split across 2 chunks', () => decode(partA, partB)],
    ['frame', 'FrameDecoder, 100 frames in 1 chunk (per 100)', () => {
      const d = new p.FrameDecoder();
      d.write(batch);
      let k = 0;
      while (d.read()) k++;
      return k;
    }],
  );

  /** @type {Record<string, any>} */
  const samples = {
    hello: { type: 'hello', id: 'peer-alice-0001', nonce: n16, software: 'tcp-punch/0.1.0 node/20', private: [], warm: true },
    punch: { type: 'punch', coordId: n16, attempt: 1, mode: 'sync', route: 'public', remote: { host: '198.18.2.2', port: 40123 }, delayMs: 12, timeoutMs: 5000 },
    'direct-auth': { type: 'direct-auth', coordId: n16, attempt: 1, role: 'initiator', mac: n32 },
  };
  for (const [name, m] of Object.entries(samples)) {
    list.push(['message', `encodeMessage ${name}`, () => p.encodeMessage(m)]);
    /** @type {Buffer | null} */
    let wire = null;
    try {
      wire = p.encodeMessage(m);
    } catch {}
    const w = wire;
    list.push(['message', `decode ${name} (frame + fields)`, () => {
      if (!w) throw new Error(`the ${name} sample does not encode`);
      const d = new p.FrameDecoder();
      d.write(w);
      return p.decodeMessage(d.read());
    }]);
  }

  const id = 'peer-alice-0001';
  const idKey = p.deriveIdKey?.('server-secret', id);
  list.push(
    ['handshake', 'deriveIdKey (server, per auth)', () => p.deriveIdKey('server-secret', id)],
    ['handshake', 'clientProof', () => p.clientProof(idKey, n32, n16, id)],
    ['handshake', 'server side of auth: derive + verify + prove + session key', () => {
      const k = p.deriveIdKey('server-secret', id);
      const ok = p.safeEqual(p.clientProof(k, n32, n16, id), p.clientProof(k, n32, n16, id));
      return ok && p.serverProof(k, n32, n16, id) && p.sessionKey(k, n32, n16);
    }],
    ['handshake', 'wrapPairKey', () => p.wrapPairKey(key, n16, n32)],
    ['handshake', 'direct-auth: 2 × directMac + compare', () => p.safeEqual(p.directMac(key, n16, 1, 'initiator', n16), p.directMac(key, n16, 1, 'responder', n16))],
  );
  return list;
}

/** @param {MicroOptions} opts */
export async function run(opts) {
  const proto = await importDist('protocol/index.js');
  /** @type {string[]} */
  const notes = [];
  const results = [];
  for (const [group, name, fn] of cases(proto)) {
    try {
      fn();
    } catch (e) {
      results.push({ group, name, note: `skipped: ${/** @type {Error} */ (e).message.split('\n')[0]}` });
      continue;
    }
    log(`micro: ${name}`);
    const b = new Benchmark(name, fn, { maxTime: opts.maxTime, minSamples: 5 });
    b.run({ async: false });
    if (b.error) {
      results.push({ group, name, note: `failed: ${b.error.message}` });
      continue;
    }
    results.push({
      group,
      name,
      opsPerSec: b.hz,
      rmePct: b.stats.rme,
      meanNs: b.stats.mean * 1e9,
      samples: b.stats.sample.length,
    });
  }
  return { name: 'micro', options: opts, results, notes };
}

/**
 * @param {Awaited<ReturnType<typeof run>>} section
 * @param {(header: string[], rows: string[][]) => string} [table] text (terminal) or Markdown table renderer
 */
export function report(section, table = textTable) {
  const rows = section.results.map((r) => [
    r.group,
    r.name,
    r.opsPerSec ? Math.round(r.opsPerSec).toLocaleString('en-US') : '—',
    r.rmePct !== undefined ? `±${fmt(r.rmePct, 1)}%` : '',
    r.meanNs !== undefined ? fmt(r.meanNs / 1000, 3) : '',
    r.note ?? '',
  ]);
  const out = ['Micro-benchmarks (benchmark.js)', table(['group', 'case', 'ops/s', 'rme', 'µs/op', 'note'], rows)];
  for (const n of section.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

if (isMain(import.meta.url)) {
  import('./lib/cli.mjs').then((m) => m.main(['--only', 'micro', ...process.argv.slice(2)]));
}
