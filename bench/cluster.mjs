// @ts-check
/**
 * Cluster mode with three nodes: what the cross-node hop costs, and how long a node crash takes to heal. Three
 * `startServer({ cluster })` nodes, each in its own process (bench/lib/rendezvous-proc.mjs), on one real
 * redis-server (started here on a free loopback port, no persistence); peers (in this process) spread over them,
 * each with the three nodes as its server list (its own first).
 *
 * - registrations/s, all peers concurrently, each on its node (a lease claim and a subscription in Redis each);
 * - direct dials same-node (both peers on node 1) and cross-node (dialer on node 1, target on node 2): latency of
 *   one dial at a time, the two kinds alternating (the cross-node hop is the difference of the medians),
 *   coordinations/s with several at once,
 *   and each node's CPU per coordination (the nodes' process CPU over the phase / dials);
 * - the fault timeline: node 3 is SIGKILLed; time until each of its peers is registered on another node, until
 *   the survivors' directories mark it down, and until dials from node 1 reach its peers again.
 *
 *   npm run build:ts && node bench/cluster.mjs [--peers N] [--iterations N]
 *   node bench/run.mjs --only cluster
 *
 * Bounded: at most --peers peers (default 90, max 600), --iterations dials per latency figure (default 300) and
 * 4 × that per rate figure, each phase under its own time cap; the whole run stays under 90 s.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { BENCH_DIR, fmt, forkChild, importDist, isMain, log, quantile, request, sleep, stopChild, table as textTable } from './lib/common.mjs';
import { num } from './lib/cli.mjs';
import { startRedis } from './lib/redis-server.mjs';

const RENDEZVOUS = path.join(BENCH_DIR, 'lib', 'rendezvous-proc.mjs');
const SECRET = 'bench-cluster-secret-0123456789';
const NODES = 3;
/** Every child dies by then, whatever happens here. */
const LIFETIME_MS = 120_000;
/** The whole run's budget; each phase stops early when it is spent. */
const BUDGET_MS = 85_000;

/**
 * @typedef {object} ClusterBenchOptions
 * @property {number} peers peers in all, spread over the three nodes
 * @property {number} iterations dials per latency figure (4× per rate figure)
 */

/** @type {ClusterBenchOptions} */
export const DEFAULTS = { peers: 90, iterations: 300 };
/** @type {ClusterBenchOptions} */
export const FULL = DEFAULTS;

/** @param {Record<string, any>} flags @param {boolean} _full @returns {ClusterBenchOptions} */
export function options(flags, _full) {
  return { peers: num(flags.peers, DEFAULTS.peers, 600, 12), iterations: num(flags.iterations, DEFAULTS.iterations, 1000, 10) };
}

/** Process CPU seconds of each node (user + system). @param {import('node:child_process').ChildProcess[]} nodes */
async function nodeCpu(nodes) {
  return Promise.all(nodes.map(async (n) => (n.exitCode === null && n.signalCode === null ? (await request(n, 'stats')).cpu : null)));
}

/**
 * µs of each node's CPU per op: `ops` is the phase's count, or one count per node (the ops that node served).
 * @param {any[]} before @param {any[]} after @param {number | number[]} ops
 */
function cpuPerOp(before, after, ops) {
  const n = (/** @type {number} */ i) => Math.max(1, Array.isArray(ops) ? ops[i] : ops);
  return before.map((b, i) => (b && after[i] ? (after[i].user + after[i].system - b.user - b.system) / n(i) : null));
}

/**
 * Runs `op` `count` times, `concurrency` at a time, until `deadline`.
 * @param {() => Promise<unknown>} op @param {number} count @param {number} concurrency @param {number} deadline
 */
async function pool(op, count, concurrency, deadline) {
  let started = 0;
  let ok = 0;
  /** @type {Record<string, number>} */
  const codes = {};
  const t0 = performance.now();
  const worker = async () => {
    while (started < count && Date.now() < deadline) {
      started++;
      try {
        await op();
        ok++;
      } catch (e) {
        const c = /** @type {any} */ (e).code ?? 'ERROR';
        codes[c] = (codes[c] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { ok, failed: started - ok, seconds: (performance.now() - t0) / 1000, codes };
}

/** @param {ClusterBenchOptions} opts */
export async function run(opts) {
  const deadline = Date.now() + BUDGET_MS;
  const left = (/** @type {number} */ capMs) => Math.min(deadline, Date.now() + capMs);
  const { Peer } = await importDist('index.js');
  const redis = await startRedis({ lifetimeMs: LIFETIME_MS });
  const nodes = Array.from({ length: NODES }, () => forkChild(RENDEZVOUS, [], { lifetimeMs: LIFETIME_MS }));
  /** @type {any[]} */
  const peers = [];
  try {
    const ports = await Promise.all(
      nodes.map(async (n, i) => {
        const cluster = { redis: redis.url, nodeId: `bench-n${i + 1}`, heartbeatMs: 1000, leaseTtlMs: 15_000 };
        return /** @type {number} */ ((await request(n, 'start', { host: '127.0.0.1', secret: SECRET, options: { natProbe: false, cluster } })).port);
      }),
    );
    const list = (/** @type {number} */ i) => [0, 1, 2].map((k) => `127.0.0.1:${ports[(i + k) % NODES]}`);

    // Registrations: peer i on node i % 3.
    let cpu0 = await nodeCpu(nodes);
    const reg = await pool(
      async () => {
        const i = peers.length;
        const slot = { id: `p${i}`, node: i % NODES, peer: /** @type {any} */ (null) };
        peers.push(slot);
        slot.peer = await Peer.connect({ server: list(slot.node), id: slot.id, secret: SECRET, reconnect: { minDelayMs: 50, maxDelayMs: 500 } });
        slot.peer.on('error', () => {});
        slot.peer.on('connection', (/** @type {import('node:net').Socket} */ s) => {
          s.on('error', () => {});
          s.destroy();
        });
      },
      opts.peers,
      16,
      left(20_000),
    );
    const on = (/** @type {number} */ n) => peers.filter((p) => p.node === n && p.peer);
    // Each node's CPU over the registrations it served.
    const registrations = { ...reg, perSecond: reg.ok / reg.seconds, cpuUsPerOp: cpuPerOp(cpu0, await nodeCpu(nodes), [0, 1, 2].map((n) => on(n).length)) };
    log(`cluster: ${reg.ok} registrations in ${fmt(reg.seconds)} s`);

    // The dialers: the first half of node 1's peers; same-node targets: the other half, cross-node: node 2's.
    const half = Math.floor(on(0).length / 2);
    const from = on(0).slice(0, half);
    /** Dials from the dialers to `to`, round robin. @param {any[]} to */
    const dialer = (to) => {
      let k = 0;
      return async () => {
        const i = k++;
        const r = await from[i % from.length].peer.dial(to[i % to.length].id, { strategy: 'direct', timeoutMs: 5000 });
        r.socket.on('error', () => {});
        r.socket.destroy();
      };
    };
    /** @type {Record<string, any>} */
    const dials = {};
    // The yardstick of the cross-node hop: Redis's round trip from an idle client (the nodes' own figure includes
    // their event loops' queueing).
    const { connectRedis } = await importDist('cluster/index.js');
    const probe = await connectRedis(redis.url);
    /** @type {number[]} */
    const pings = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await probe.ping();
      pings.push(performance.now() - t);
    }
    probe.disconnect();
    const redisRttMs = quantile(pings, 0.5);
    const kinds = /** @type {const} */ ([['same-node', on(0).slice(half)], ['cross-node', on(1)]]);
    const ops = kinds.map(([, to]) => dialer(to));
    // Latency, one dial at a time, the two kinds alternating so that what the machine does meanwhile weighs on
    // both alike (their difference is the hop).
    /** @type {number[][]} */
    const lat = kinds.map(() => []);
    const latDeadline = left(30_000);
    for (let i = 0; i < opts.iterations && Date.now() < latDeadline; i++) {
      for (const k of [0, 1]) {
        const t0 = performance.now();
        try {
          await ops[k]();
          lat[k].push(performance.now() - t0);
        } catch {}
      }
    }
    for (const [k, [kind]] of kinds.entries()) {
      const { totals: totals0, cluster: cards0 } = (await request(nodes[0], 'stats')).stats;
      cpu0 = await nodeCpu(nodes);
      const rate = await pool(ops[k], opts.iterations * 4, 8, left(15_000));
      const { totals: totals1, cluster: cards1 } = (await request(nodes[0], 'stats')).stats;
      const lookups = (/** @type {any} */ c) => c.cards.hits + c.cards.misses;
      dials[kind] = {
        // Card lookups of the coordinator answered from its cache (cross-node only: same-node dials look up none).
        cardHitShare: lookups(cards1) > lookups(cards0) ? (cards1.cards.hits - cards0.cards.hits) / (lookups(cards1) - lookups(cards0)) : null,
        // Attempts in which both sides punched from their warm ports (no observe connection), on the coordinator.
        warmShare: (totals1.warmAttempts - totals0.warmAttempts) / Math.max(1, totals1.attempts - totals0.attempts),
        latencyMs: { median: quantile(lat[k], 0.5), p99: quantile(lat[k], 0.99), n: lat[k].length },
        ...rate,
        perSecond: rate.ok / rate.seconds,
        cpuUsPerOp: cpuPerOp(cpu0, await nodeCpu(nodes), rate.ok),
      };
      log(`cluster: ${kind} dials: median ${fmt(dials[kind].latencyMs.median)} ms, ${fmt(dials[kind].perSecond, 0)}/s`);
    }

    // The fault: node 3 is SIGKILLed.
    const victims = on(2);
    const survivors = nodes.slice(0, 2);
    const t0 = performance.now();
    const since = () => performance.now() - t0;
    nodes[2].kill('SIGKILL');
    /** @type {Record<string, number | null>} */
    const fault = { allReRegisteredMs: null, firstReRegisteredMs: null, nodeDownMs: null, firstDialOkMs: null, allDialsOkMs: null };
    const reached = new Set();
    const faultDeadline = left(25_000);
    const a = on(0)[0];
    while (Date.now() < faultDeadline && (fault.allDialsOkMs === null || fault.nodeDownMs === null)) {
      const moved = victims.filter((v) => v.peer.online && v.peer.server?.port !== ports[2]);
      if (moved.length > 0) fault.firstReRegisteredMs ??= since();
      if (moved.length === victims.length) fault.allReRegisteredMs ??= since();
      if (fault.nodeDownMs === null) {
        const up = await Promise.all(survivors.map(async (n) => (await request(n, 'stats')).stats.cluster.nodesUp));
        if (up.every((u) => u === NODES - 1)) fault.nodeDownMs = since();
      }
      await Promise.all(
        moved
          .filter((v) => !reached.has(v))
          .slice(0, 8)
          .map(async (v) => {
            try {
              const r = await a.peer.dial(v.id, { strategy: 'direct', timeoutMs: 2000 });
              r.socket.on('error', () => {});
              r.socket.destroy();
              reached.add(v);
              fault.firstDialOkMs ??= since();
              if (reached.size === victims.length) fault.allDialsOkMs ??= since();
            } catch {}
          }),
      );
      await sleep(20);
    }
    log(`cluster: fault timeline ${JSON.stringify(fault)}`);
    return {
      name: 'cluster',
      options: opts,
      nodes: NODES,
      peers: peers.length,
      registrations,
      dials,
      hopMs: dials['cross-node'].latencyMs.median - dials['same-node'].latencyMs.median,
      redisRttMs,
      fault: { ...fault, victims: victims.length, reached: reached.size },
    };
  } finally {
    await Promise.all(peers.map((p) => p.peer?.close().catch(() => {})));
    await Promise.all(nodes.map((n) => stopChild(n)));
    redis.stop();
  }
}

/** @param {any} s @param {(h: string[], r: string[][]) => string} [table] */
export function report(s, table = textTable) {
  const cpu = (/** @type {(number | null)[]} */ xs) => xs.map((x) => (x === null ? '—' : fmt(x, 0))).join(' / ');
  const rows = [
    ['registrations', fmt(s.registrations.perSecond, 0), '', '', cpu(s.registrations.cpuUsPerOp), `${s.registrations.ok} peers, ${s.registrations.failed} failed`],
    ...['same-node', 'cross-node'].map((k) => {
      const d = s.dials[k];
      const cached = d.cardHitShare === null || d.cardHitShare === undefined ? '' : `, ${fmt(100 * d.cardHitShare, 0)}% cards cached`;
      const note = `${d.ok} ok, ${d.failed} failed, ${fmt(100 * d.warmShare, 0)}% warm${cached}`;
      return [`dials ${k}`, fmt(d.perSecond, 0), fmt(d.latencyMs.median), fmt(d.latencyMs.p99), cpu(d.cpuUsPerOp), note];
    }),
  ];
  const f = s.fault;
  const ms = (/** @type {number | null} */ x) => (x === null ? 'never' : `${fmt(x, 0)} ms`);
  return [
    `Cluster: ${s.nodes} nodes (one process each) on one redis-server, ${s.peers} peers spread over them`,
    table(['figure', 'per second', 'median ms', 'p99 ms', 'node CPU µs/op (n1 / n2 / n3)', 'note'], rows),
    `cross-node hop: +${fmt(s.hopMs)} ms per dial (median cross-node − same-node), against a Redis round trip of ${fmt(s.redisRttMs)} ms (PING, idle client); the hop is the coord's way through Redis to the other node (and a card read where the coordinating node has none cached)`,
    `node 3 SIGKILLed (${f.victims} peers): first re-registered ${ms(f.firstReRegisteredMs)}, all ${ms(f.allReRegisteredMs)}; ` +
      `marked down ${ms(f.nodeDownMs)}; first dial to a moved peer ${ms(f.firstDialOkMs)}, all ${ms(f.allDialsOkMs)} (${f.reached}/${f.victims})`,
  ].join('\n');
}

if (isMain(import.meta.url)) {
  import('./lib/cli.mjs').then((m) => m.main(['--only', 'cluster', ...process.argv.slice(2)]));
}
