// @ts-check
// Well-behaved peers in a process of their own (their memory and descriptors measured apart from the server's):
// they register, dial each other with the library's strategies and run the hash-checked exchange of exchange.mjs
// on every stream, both ways. Runs the compiled library (dist/).
//
//   node fleet-child.mjs '<json FleetConfig>'
//
// FleetConfig: { server: 'host:port', peers: [{ id, localAddress? }], secret?, reconnect?, incomingBytes?,
//                exchangeTimeoutMs? }
// To the parent: { type: 'ready' } once every peer is registered, or { type: 'fatal', message }.
// From the parent (answered as { type: 'reply', seq, ... }):
//   { type: 'dial', seq, from, to, strategy, bytes, timeoutMs }           -> one dial + exchange: DialOutcome
//   { type: 'run', seq, plan }                                              -> a load run: Aggregate
//   { type: 'loop-start', seq, loop } / { type: 'loop-stop', seq }          -> canary loop; stop answers Aggregate
//   { type: 'set', seq, acceptDelayMs?, incomingBytes?, leakTokens?, spreadMs? }
//   { type: 'wait-online', seq, timeoutMs }                                 -> { online: n, ms }
//   { type: 'stats', seq }                                                  -> fds, rss, ..., incoming, events
//   { type: 'close', seq }                                                  -> closes the peers, then exits
// Unsolicited: { type: 'leak', token, sessionId, side, peer } (relay grants, when leakTokens is set).
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { exchange } from './exchange.mjs';

const { Peer } = await import('../../../dist/index.js');
const { decodeRelay } = await import('../../../dist/relay/frames.js');

/** @type {{ server: string, peers: { id: string, localAddress?: string }[], secret?: string, reconnect?: any,
 *   incomingBytes?: number, exchangeTimeoutMs?: number }} */
const config = JSON.parse(process.argv[2] ?? '{}');
const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};
const fds = () => readdirSync('/proc/self/fd').length;

const state = {
  incomingBytes: config.incomingBytes ?? 64 * 1024,
  exchangeTimeoutMs: config.exchangeTimeoutMs ?? 30_000,
  acceptDelayMs: 0,
  leakTokens: false,
  /** Spread each stream's writing over this long (both sides); 0: as fast as possible. */
  spreadMs: 0,
};

/** Counts outcomes; `codes` are error codes of failures. */
class Aggregate {
  dials = 0;
  ok = 0;
  failed = 0;
  /** @type {Record<string, number>} */ codes = {};
  /** @type {Record<string, { ok: number, failed: number }>} */ byStrategy = {};
  /** @type {Record<string, number>} */ byPath = {};
  /** @type {Record<string, number>} */ upgraded = {};
  bytesChecked = 0;
  /** @type {number[]} */ dialMs = [];
  /** @type {{ code: string, message: string, strategy: string, stage: string, received?: number, expected?: number }[]} */ samples = [];
  /** Exchange failures after every payload byte had arrived: reset or stuck at the very end of the stream. */
  failedAtEnd = 0;
  /** @param {any} r */
  add(r) {
    this.dials++;
    const s = (this.byStrategy[r.strategy] ??= { ok: 0, failed: 0 });
    if (r.ok) {
      this.ok++;
      s.ok++;
      this.byPath[r.path] = (this.byPath[r.path] ?? 0) + 1;
      this.bytesChecked += r.received;
      this.dialMs.push(r.dialMs);
    } else {
      this.failed++;
      s.failed++;
      this.codes[r.code] = (this.codes[r.code] ?? 0) + 1;
      if (r.stage === 'exchange' && (r.code === 'ECONNRESET' || r.code === 'ETIMEDOUT') && r.received === r.expected) this.failedAtEnd++;
      if (this.samples.length < 10) this.samples.push({ code: r.code, message: r.message, strategy: r.strategy, stage: r.stage, received: r.received, expected: r.expected });
    }
  }
  toJSON() {
    const sorted = [...this.dialMs].sort((a, b) => a - b);
    const q = (/** @type {number} */ p) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 10) / 10 : null);
    return {
      dials: this.dials,
      ok: this.ok,
      failed: this.failed,
      codes: this.codes,
      byStrategy: this.byStrategy,
      byPath: this.byPath,
      bytesChecked: this.bytesChecked,
      failedAtEnd: this.failedAtEnd,
      dialMs: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: sorted.length ? Math.round(sorted[sorted.length - 1]) : null },
      samples: this.samples,
    };
  }
}

const incoming = {
  ok: 0,
  failed: 0,
  bytesChecked: 0,
  /** @type {Record<string, number>} */ codes: {},
  byPath: /** @type {Record<string, number>} */ ({}),
  /** @type {{ code?: string, reason?: string, path: string, upgradable: boolean }[]} */ samples: [],
  /** Failures after every payload byte had arrived: reset or stuck at the very end of the stream. */
  failedAtEnd: 0,
};
const events = { online: 0, offline: 0, close: 0, upgrade: 0, relayEnd: /** @type {Record<string, number>} */ ({}), /** @type {Record<string, number>} */ offlineCodes: {} };

/** @type {Map<string, any>} */
const peers = new Map();
try {
  for (const p of config.peers) {
    const peer = await Peer.connect({
      server: config.server,
      id: p.id,
      ...(p.localAddress ? { localAddress: p.localAddress } : {}),
      ...(config.secret ? { secret: config.secret } : {}),
      ...(config.reconnect !== undefined ? { reconnect: config.reconnect } : {}),
      accept: async () => {
        if (state.acceptDelayMs > 0) await sleep(state.acceptDelayMs);
        return true;
      },
    });
    peer.on('connection', (/** @type {any} */ socket, /** @type {any} */ info) => {
      socket.on('error', () => {});
      exchange(socket, state.incomingBytes, { timeoutMs: state.exchangeTimeoutMs, spreadMs: state.spreadMs }).then((r) => {
        if (r.ok) {
          incoming.ok++;
          incoming.bytesChecked += r.received;
          incoming.byPath[info.path] = (incoming.byPath[info.path] ?? 0) + 1;
        } else {
          incoming.failed++;
          incoming.codes[r.code ?? 'ERR'] = (incoming.codes[r.code ?? 'ERR'] ?? 0) + 1;
          if ((r.code === 'ECONNRESET' || r.code === 'ETIMEDOUT') && r.received === r.expected) incoming.failedAtEnd++;
          if (incoming.samples.length < 10) incoming.samples.push({ code: r.code, reason: r.reason, path: info.path, upgradable: socket.constructor?.name === 'UpgradableStream' });
        }
      });
    });
    peer.on('online', () => events.online++);
    peer.on('offline', (/** @type {any} */ err) => {
      events.offline++;
      const c = err?.code ?? 'none';
      events.offlineCodes[c] = (events.offlineCodes[c] ?? 0) + 1;
    });
    peer.on('close', () => events.close++);
    peer.on('upgrade', () => events.upgrade++);
    peer.on('relay-end', (/** @type {any} */ e) => (events.relayEnd[e.reason] = (events.relayEnd[e.reason] ?? 0) + 1));
    peer.on('relay-message', (/** @type {any} */ msg) => {
      if (!state.leakTokens) return;
      try {
        const b = decodeRelay(msg);
        if (b.name === 'relay-token') send({ type: 'leak', token: b.token, sessionId: b.sessionId, side: b.side, peer: p.id });
      } catch {
        // not ours
      }
    });
    peers.set(p.id, peer);
  }
} catch (err) {
  send({ type: 'fatal', message: String(/** @type {any} */ (err)?.message ?? err), code: /** @type {any} */ (err)?.code });
  process.exit(1);
}

/**
 * One dial and its exchange.
 * @param {string} from @param {string} to @param {string} strategy @param {number} bytes @param {number} timeoutMs
 */
async function dialOnce(from, to, strategy, bytes, timeoutMs) {
  const t0 = performance.now();
  const peer = peers.get(from);
  try {
    const r = await peer.dial(to, { strategy, timeoutMs });
    const dialMs = performance.now() - t0;
    r.socket.on('error', () => {});
    const x = await exchange(r.socket, bytes, { timeoutMs: state.exchangeTimeoutMs, spreadMs: state.spreadMs });
    const out = { ok: x.ok, strategy, path: r.path, dialMs, sent: x.sent, received: x.received, expected: x.expected };
    if (!x.ok) return { ...out, code: x.code, message: x.reason, stage: 'exchange' };
    return out;
  } catch (err) {
    const e = /** @type {any} */ (err);
    return { ok: false, strategy, code: e?.code ?? 'ERR_UNKNOWN', message: String(e?.message ?? e).slice(0, 200), dialMs: performance.now() - t0, stage: 'dial' };
  }
}

/** @type {{ stop: boolean, agg: Aggregate, done: Promise<void> } | undefined} */
let loop;

/**
 * Canary: one dial at a time between `pairs`, cycling strategies, until stopped (bounded by count and time).
 * @param {{ pairs: [string, string][], strategies: string[], bytes: number, pauseMs: number, maxDials: number,
 *   maxDurationMs: number, timeoutMs: number }} l
 */
function startLoop(l) {
  const agg = new Aggregate();
  const self = { stop: false, agg, done: Promise.resolve() };
  self.done = (async () => {
    const end = performance.now() + l.maxDurationMs;
    for (let i = 0; !self.stop && i < l.maxDials && performance.now() < end; i++) {
      const [from, to] = l.pairs[i % l.pairs.length];
      const strategy = l.strategies[Math.floor(i / l.pairs.length) % l.strategies.length];
      agg.add(await dialOnce(from, to, strategy, l.bytes, l.timeoutMs));
      if (l.pauseMs > 0) await sleep(l.pauseMs);
    }
  })();
  return self;
}

/**
 * Load: every peer dials `dialsPerPeer` times (peer k's j-th dial goes to peer k+1+j mod N), the whole run paced
 * to `ratePerSec` dial starts, at most `concurrency` at once, and bounded by `maxDurationMs`.
 * @param {{ dialsPerPeer: number, strategies: string[], bytes: number, ratePerSec: number, concurrency: number,
 *   maxDurationMs: number, timeoutMs: number }} plan
 */
async function run(plan) {
  const ids = [...peers.keys()];
  /** @type {{ from: string, to: string, strategy: string }[]} */
  const jobs = [];
  for (let j = 0; j < plan.dialsPerPeer; j++) {
    for (let k = 0; k < ids.length; k++) {
      const to = ids[(k + 1 + (j % (ids.length - 1))) % ids.length];
      jobs.push({ from: ids[k], to, strategy: plan.strategies[(j * ids.length + k) % plan.strategies.length] });
    }
  }
  const agg = new Aggregate();
  const t0 = performance.now();
  let inFlight = 0;
  let maxInFlight = 0;
  /** @type {Promise<void>[]} */
  const all = [];
  let skipped = 0;
  for (let i = 0; i < jobs.length; i++) {
    const at = t0 + (i * 1000) / plan.ratePerSec;
    while (performance.now() < at || inFlight >= plan.concurrency) await sleep(Math.max(1, Math.min(20, at - performance.now())));
    if (performance.now() - t0 > plan.maxDurationMs) {
      skipped = jobs.length - i;
      break;
    }
    const job = jobs[i];
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    all.push(
      dialOnce(job.from, job.to, job.strategy, plan.bytes, plan.timeoutMs).then((r) => {
        inFlight--;
        agg.add(r);
      }),
    );
  }
  await Promise.all(all);
  return { ...agg.toJSON(), planned: jobs.length, skipped, maxInFlight, wallMs: Math.round(performance.now() - t0) };
}

process.on('message', async (/** @type {any} */ msg) => {
  const reply = (/** @type {any} */ body) => send({ type: 'reply', seq: msg.seq, ...body });
  switch (msg.type) {
    case 'dial':
      return reply(await dialOnce(msg.from, msg.to, msg.strategy ?? 'direct', msg.bytes ?? 65536, msg.timeoutMs ?? 15_000));
    case 'run':
      return reply(await run(msg.plan));
    case 'loop-start':
      loop = startLoop(msg.loop);
      return reply({});
    case 'loop-stop': {
      if (!loop) return reply(new Aggregate().toJSON());
      loop.stop = true;
      await loop.done;
      const agg = loop.agg;
      loop = undefined;
      return reply(agg.toJSON());
    }
    case 'set':
      if (msg.acceptDelayMs !== undefined) state.acceptDelayMs = msg.acceptDelayMs;
      if (msg.incomingBytes !== undefined) state.incomingBytes = msg.incomingBytes;
      if (msg.leakTokens !== undefined) state.leakTokens = msg.leakTokens;
      if (msg.spreadMs !== undefined) state.spreadMs = msg.spreadMs;
      return reply({});
    case 'wait-online': {
      const t0 = performance.now();
      const all = () => [...peers.values()].every((p) => p.online);
      while (!all() && performance.now() - t0 < msg.timeoutMs) await sleep(20);
      return reply({ online: [...peers.values()].filter((p) => p.online).length, ms: Math.round(performance.now() - t0) });
    }
    case 'stats': {
      const m = process.memoryUsage();
      return reply({ fds: fds(), rss: m.rss, heapUsed: m.heapUsed, online: [...peers.values()].filter((p) => p.online).length, incoming, events });
    }
    case 'close':
      await Promise.all([...peers.values()].map((p) => p.close()));
      reply({});
      setTimeout(() => process.exit(0), 50);
      return;
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
