// @ts-check
/**
 * Question 1: how fast do bytes move on loopback, and at what CPU cost? The paths, the order of measurement and
 * the targets are described in docs/BENCHMARKS.md §1: Node sockets at both ends (plain vs punched, see
 * lib/tcp-endpoint.mjs) and relays between an iperf3 client and server (see lib/relays.mjs). Every figure is the
 * median of `runs` runs with min–max, each ratio taken against the reference of the same run.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import {
  BENCH_DIR,
  fmt,
  fmtSummary,
  forkChild,
  isMain,
  log,
  request,
  spawnTool,
  stopChild,
  summarize,
  table as textTable,
  waitExit,
  which,
} from './lib/common.mjs';
import { num, numList, strList } from './lib/cli.mjs';
import { RELAY_LABELS, awaitListening, freePort, startRelay } from './lib/relays.mjs';

export const NODE_PATHS = /** @type {const} */ (['node-plain', 'node-punched']);
export const RELAY_PATHS = /** @type {const} */ (['direct', 'c-splice', 'native', 'js', 'pipe', 'socat', 'haproxy-splice', 'haproxy-nosplice']);

/** Relay paths measured only when named with --paths. */
export const OPTIONAL_RELAY_PATHS = /** @type {const} */ (['native-copy']);

/** @type {Record<string, string>} */
export const PATH_LABELS = {
  'node-plain': 'plain Node TCP (reference)',
  'node-punched': 'punched by tcp-punch',
  ...RELAY_LABELS,
};

/**
 * @typedef {object} ThroughputOptions
 * @property {number} runs
 * @property {number} seconds per measurement
 * @property {number[]} streams e.g. [1, 4]
 * @property {('fwd' | 'rev')[]} directions fwd: the dialing side (iperf3 client) sends; rev: the other side sends
 * @property {string[]} [paths] a subset of NODE_PATHS and RELAY_PATHS (default: all)
 * @property {boolean} [pin] pin the two Node-socket ends to CPUs 0 and 1 (default off; needs taskset)
 */

/** Seconds per Node-socket sample at the least (see the node group). */
const NODE_MIN_SECONDS = 6;

/** @type {ThroughputOptions} */
export const DEFAULTS = { runs: 3, seconds: 2, streams: [1, 4], directions: ['fwd', 'rev'] };
/** @type {ThroughputOptions} */
export const FULL = { runs: 5, seconds: 5, streams: [1, 4], directions: ['fwd', 'rev'] };

/**
 * Options from the command line (see lib/cli.mjs).
 * @param {Record<string, any>} flags @param {boolean} full @returns {ThroughputOptions}
 */
export function options(flags, full) {
  const d = full ? FULL : DEFAULTS;
  const directions = /** @type {('fwd' | 'rev')[]} */ (strList(flags.directions, d.directions));
  for (const x of directions) if (x !== 'fwd' && x !== 'rev') throw new Error(`bad direction "${x}" (fwd, rev)`);
  const paths = strList(flags.paths, undefined);
  const known = [...NODE_PATHS, ...RELAY_PATHS, ...OPTIONAL_RELAY_PATHS];
  for (const p of paths ?? []) if (!(/** @type {readonly string[]} */ (known)).includes(p)) throw new Error(`unknown path "${p}" (${known.join(', ')})`);
  return {
    runs: num(flags.runs, d.runs, 100),
    seconds: num(flags.seconds, d.seconds, 60),
    streams: numList(flags.streams, d.streams).map((n) => Math.min(16, Math.max(1, Math.round(n)))),
    directions,
    paths,
    // Unpinned by default: pinned runs of both paths split into ~3 and ~15 Gbit/s modes on a 2-core machine.
    pin: !!flags.pin,
  };
}

/**
 * @typedef {object} Sample
 * @property {number} gbps
 * @property {number} bytes
 * @property {number | null} cpuPerGB relay CPU s/GB (relay group) or both endpoints' CPU s/GB (node group)
 * @property {number | null} [cpuPerGBInside] Node relays: process.cpuUsage() inside the relay, s/GB (cross-check)
 * @property {string[]} [via]
 * @property {boolean} [pinned]
 */

/**
 * Runs the throughput benchmark.
 * @param {ThroughputOptions} opts
 */
export async function run(opts) {
  const optional = /** @type {readonly string[]} */ (OPTIONAL_RELAY_PATHS);
  const want = (/** @type {string} */ p) => (opts.paths ? opts.paths.includes(p) : !optional.includes(p));
  /** @type {string[]} */
  const nodePaths = NODE_PATHS.filter(want);
  /** @type {string[]} */
  const relayPaths = [...RELAY_PATHS, ...OPTIONAL_RELAY_PATHS].filter(want);
  // The reference of a scenario is always measured: ratios are against the same run.
  if (relayPaths.length > 0 && !relayPaths.includes('direct')) relayPaths.unshift('direct');
  if (nodePaths.length > 0 && !nodePaths.includes('node-plain')) nodePaths.unshift('node-plain');
  /** @type {string[]} */
  const notes = [];
  // Each Node-socket sample is two fresh process pairs for half the time each: with 1 s halves the processes' own
  // start-up dominates and the two paths drift apart (0.6–0.9×); with 3 s halves they agree.
  const nodeSeconds = Math.max(opts.seconds, NODE_MIN_SECONDS);
  const budgetMs = (nodeSeconds * 1000 + 20_000) * 4;
  const pin = opts.pin === true && os.cpus().length >= 2 && which('taskset') !== null;
  if (nodePaths.length > 0) notes.push(pin ? 'Node-socket ends pinned: A (listener / first puncher) on CPU 0, B on CPU 1' : 'Node-socket ends not pinned');
  const iperf = relayPaths.length > 0 ? which('iperf3') : null;
  if (relayPaths.length > 0 && !iperf) notes.push('iperf3 is not installed (apt-get install iperf3): the relay comparison was skipped');
  const server = iperf ? await startIperfServer(iperf, budgetMs * 100) : null;
  /** @type {Record<string, string>} */
  const unavailable = {};
  /** Paths that have worked in this section: a later "unavailable" is then a failure, not a missing module. */
  const worked = new Set();
  const scenarios = [];
  try {
    for (const streams of opts.streams) {
      for (const direction of opts.directions) {
        const where = `${streams}x ${direction}`;
        if (nodePaths.length > 0) {
          // A run measures every path twice for half the time, in the order A B … B A, so that no path always
          // goes first or last while the machine's load drifts; the two halves make one sample.
          const samples = await runs(opts.runs, nodePaths, (r) => [...nodePaths, ...[...nodePaths].reverse()], async (p, r) => {
            log(`throughput: ${p} ${where} run ${r + 1}/${opts.runs}`);
            return measureNode(p, streams, direction, nodeSeconds / 2, budgetMs, pin);
          }, combine);
          scenarios.push(scenario('node', 'node-plain', streams, direction, nodePaths, samples, {}));
        }
        if (!server || !iperf) continue;
        // Relays: one measurement each per run, in an order that rotates from run to run.
        const samples = await runs(opts.runs, relayPaths, (r) => rotate(relayPaths, r).filter((p) => !unavailable[p]), async (p, r) => {
          log(`throughput: relay ${p} ${where} run ${r + 1}/${opts.runs}`);
          try {
            const s = await measureRelay(iperf, server.port, p, streams, direction, opts.seconds, budgetMs);
            if (!('unavailable' in s)) return worked.add(p), s;
            // It worked earlier in this run: the build changed under us (e.g. the addon being rebuilt).
            if (worked.has(p)) return { error: `became unavailable: ${s.unavailable}` };
            unavailable[p] = s.unavailable;
            return null;
          } catch (e) {
            await server.restart();
            throw e;
          }
        });
        scenarios.push(scenario('relay', 'direct', streams, direction, relayPaths, samples, unavailable));
      }
    }
  } finally {
    await server?.stop();
  }
  return { name: 'throughput', options: opts, scenarios, targets: targets(scenarios), notes };
}

/**
 * `n` runs of `paths`: run r measures the paths in `order(r)` (a path may come more than once; `combine` makes
 * one sample of its measurements); a measurement that throws is an error sample, one that returns null none.
 * @param {number} n @param {readonly string[]} paths @param {(r: number) => string[]} order
 * @param {(p: string, r: number) => Promise<Sample | { error: string } | null>} measure
 * @param {(parts: (Sample | { error: string })[]) => Sample | { error: string }} [combine]
 */
async function runs(n, paths, order, measure, combine = (parts) => parts[0]) {
  /** @type {Map<string, (Sample | { error: string })[]>} */
  const samples = new Map(paths.map((p) => [p, []]));
  for (let r = 0; r < n; r++) {
    /** @type {Map<string, (Sample | { error: string })[]>} */
    const parts = new Map();
    for (const p of order(r)) {
      const s = await measure(p, r).catch((/** @type {Error} */ e) => ({ error: String(e.message ?? e) }));
      if (s) parts.set(p, [...(parts.get(p) ?? []), s]);
    }
    for (const [p, list] of parts) samples.get(p)?.push(combine(list));
  }
  return samples;
}

/**
 * @template T @param {readonly T[]} list @param {number} k @returns {T[]}
 */
function rotate(list, k) {
  const n = list.length;
  return list.map((_, i) => list[(i + k) % n]);
}

/**
 * Builds a scenario's rows: per path the summaries of Gbit/s, CPU s/GB and the per-run ratio to the reference.
 * @param {string} group @param {string} reference @param {number} streams @param {string} direction
 * @param {readonly string[]} paths @param {Map<string, (Sample | {error: string})[]>} samples
 * @param {Record<string, string>} unavailable
 */
function scenario(group, reference, streams, direction, paths, samples, unavailable) {
  const ref = samples.get(reference) ?? [];
  const rows = paths.map((p) => {
    const list = samples.get(p) ?? [];
    const ok = /** @type {Sample[]} */ (list.filter((s) => !('error' in s)));
    const errors = /** @type {{error: string}[]} */ (list.filter((s) => 'error' in s)).map((e) => e.error);
    const ratios = list.map((s, i) => {
      const rs = ref[i];
      return 'gbps' in s && rs && 'gbps' in rs && rs.gbps > 0 ? s.gbps / rs.gbps : null;
    });
    return {
      path: p,
      label: PATH_LABELS[p] ?? p,
      available: !unavailable[p],
      note: unavailable[p] ?? undefined,
      gbps: summarize(ok.map((s) => s.gbps)),
      /** Per run, in run order (null for a failed run): ratios between paths are taken run by run. */
      runs: list.map((s) => ('gbps' in s ? s.gbps : null)),
      ratio: p === reference ? null : summarize(ratios),
      cpuPerGB: summarize(ok.map((s) => s.cpuPerGB)),
      cpuPerGBInside: summarize(ok.map((s) => s.cpuPerGBInside)),
      via: ok.flatMap((s) => s.via ?? []).filter((v, i, a) => a.indexOf(v) === i),
      errors: errors.length ? errors : undefined,
    };
  });
  return { group, reference, streams, direction, rows };
}

// ------------------------------------------------------------------ node group

/**
 * One sample from the two halves of a run: bytes over time, CPU over bytes.
 * @param {(Sample | { error: string })[]} parts @returns {Sample | { error: string }}
 */
function combine(parts) {
  const bad = parts.find((x) => 'error' in x);
  if (bad) return bad;
  const ok = /** @type {Sample[]} */ (parts);
  const bytes = ok.reduce((a, x) => a + x.bytes, 0);
  const seconds = ok.reduce((a, x) => a + (x.bytes * 8) / x.gbps / 1e9, 0);
  const cpu = ok.reduce((a, x) => a + (x.cpuPerGB ?? NaN) * (x.bytes / 1e9), 0);
  return {
    gbps: (bytes * 8) / seconds / 1e9,
    bytes,
    cpuPerGB: Number.isFinite(cpu) ? cpu / (bytes / 1e9) : null,
    via: ok.flatMap((x) => x.via ?? []),
    pinned: ok.every((x) => x.pinned),
  };
}

/**
 * One measurement between two tcp-endpoint processes A and B. fwd: B sends to A; rev: A sends to B.
 * For plain sockets A listens and B connects; for punched sockets both punch at once.
 * @param {string} p @param {number} streams @param {string} direction @param {number} seconds @param {number} budgetMs
 * @param {boolean} pin run A on CPU 0 and B on CPU 1 (taskset)
 * @returns {Promise<Sample>}
 */
async function measureNode(p, streams, direction, seconds, budgetMs, pin) {
  const script = path.join(BENCH_DIR, 'lib', 'tcp-endpoint.mjs');
  const a = forkChild(script, [], { lifetimeMs: budgetMs });
  const b = forkChild(script, [], { lifetimeMs: budgetMs });
  // One core each, the same for both paths: whether the two ends share a core (and where the kernel's softirq work
  // lands) otherwise swings single-stream loopback throughput by ±50% from run to run.
  const pinned = pin && pinTo(a.pid, 0) && pinTo(b.pid, 1);
  try {
    const punched = p === 'node-punched';
    const [pa, pb] = await Promise.all([
      request(a, 'prepare', { mode: punched ? 'punch' : 'listen', streams }),
      request(b, 'prepare', { mode: punched ? 'punch' : 'connect', streams }),
    ]);
    const [ca, cb] = await Promise.all([
      request(a, 'connect', { peerPorts: pb.ports }, 20_000),
      request(b, 'connect', { peerPorts: pa.ports }, 20_000),
    ]);
    const [snd, rcv] = direction === 'fwd' ? [b, a] : [a, b];
    const wait = seconds * 1000 + 20_000;
    const [rs, ss] = await Promise.all([
      request(rcv, 'go', { role: 'recv' }, wait),
      request(snd, 'go', { role: 'send', seconds }, wait),
    ]);
    const gb = rs.bytes / 1e9;
    return {
      gbps: (rs.bytes * 8) / rs.seconds / 1e9,
      bytes: rs.bytes,
      cpuPerGB: gb > 0 ? (rs.cpu + ss.cpu) / gb : null,
      via: punched ? [...ca.via, ...cb.via] : undefined,
      pinned,
    };
  } finally {
    await Promise.all([stopChild(a), stopChild(b)]);
  }
}

/**
 * Sets the CPU affinity of every thread of a process (taskset -a -p -c). False if it failed.
 * @param {number | undefined} pid @param {number} cpu
 */
function pinTo(pid, cpu) {
  if (!pid) return false;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ relay group

/**
 * A long-lived iperf3 server on 127.0.0.1 (it serves one client at a time).
 * @param {string} iperf @param {number} lifetimeMs
 */
async function startIperfServer(iperf, lifetimeMs) {
  const port = await freePort();
  /** @type {ReturnType<typeof spawnTool> | null} */
  let child = null;
  const start = async () => {
    child = spawnTool(iperf, ['-s', '-B', '127.0.0.1', '-p', String(port)], { lifetimeMs });
    await awaitListening(child, port, 'iperf3 server');
  };
  await start();
  return {
    port,
    restart: async () => {
      if (child) await stopChild(child);
      await start();
    },
    stop: async () => {
      if (child) await stopChild(child);
    },
  };
}

/**
 * One iperf3 run through a freshly started relay.
 * @param {string} iperf @param {number} serverPort @param {string} kind @param {number} streams
 * @param {string} direction @param {number} seconds @param {number} budgetMs
 * @returns {Promise<Sample | { unavailable: string }>}
 */
async function measureRelay(iperf, serverPort, kind, streams, direction, seconds, budgetMs) {
  const relay = await startRelay(kind, serverPort, { lifetimeMs: budgetMs });
  if (!relay.available) return { unavailable: relay.note ?? 'not available' };
  try {
    const c0 = relay.cpuSeconds();
    const i0 = relay.stats ? await relay.stats() : null;
    const args = ['-c', '127.0.0.1', '-p', String(relay.port), '-t', String(seconds), '-P', String(streams), '-J'];
    args.push('--connect-timeout', '5000');
    if (direction === 'rev') args.push('-R');
    const client = spawnTool(iperf, args, { lifetimeMs: seconds * 1000 + 20_000 });
    const code = await waitExit(client, seconds * 1000 + 20_000);
    /** @type {any} */
    let json;
    try {
      json = JSON.parse(client.out.stdout);
    } catch {
      throw new Error(`iperf3 client exited ${code}: ${client.out.stderr.trim() || client.out.stdout.slice(0, 300)}`);
    }
    if (json.error) throw new Error(`iperf3: ${json.error}`);
    await relay.idle();
    const c1 = relay.cpuSeconds();
    const i1 = relay.stats ? await relay.stats() : null;
    const recv = json.end?.sum_received;
    if (!recv?.bytes) throw new Error('iperf3 reported no received bytes');
    const gb = recv.bytes / 1e9;
    const cpu = kind === 'direct' || c0 === null || c1 === null ? null : c1 - c0;
    const inside =
      i0 && i1 ? (i1.cpu.user + i1.cpu.system - i0.cpu.user - i0.cpu.system) / 1e6 : null;
    return {
      gbps: recv.bits_per_second / 1e9,
      bytes: recv.bytes,
      cpuPerGB: cpu === null ? null : cpu / gb,
      cpuPerGBInside: inside === null ? null : inside / gb,
    };
  } finally {
    await relay.stop();
  }
}

// ------------------------------------------------------------------ targets and report

/**
 * The relay's throughput targets, for every relay scenario (streams × direction): the native pump against the
 * limit of a relay (c-splice) and haproxy's full splice, as the median of per-run ratios, and its CPU per GB.
 * Plus punched ≥ 0.95× plain Node TCP on the node group. A target with a path missing reads null.
 * @param {ReturnType<typeof scenario>[]} scenarios
 */
function targets(scenarios) {
  const row = (/** @type {ReturnType<typeof scenario>} */ s, /** @type {string} */ p) =>
    s.rows.find((r) => r.path === p && r.available && r.gbps);
  /** @param {any} x @param {any} y */
  const ratio = (x, y) =>
    x && y ? summarize(x.runs.map((/** @type {number | null} */ v, /** @type {number} */ i) => (v && y.runs[i] ? v / y.runs[i] : null))) : null;
  /** @param {string} target @param {any} r @param {number} min */
  const atLeast = (target, r, min) => ({ target, value: r ? `${fmt(r.median)}×` : null, met: r ? r.median >= min : null });
  const out = [];
  for (const s of scenarios) {
    const where = `${s.streams} stream${s.streams > 1 ? 's' : ''} ${s.direction}`;
    if (s.group === 'node') {
      const punched = row(s, 'node-punched');
      out.push(atLeast(`${where}: punched ≥ 0.95× plain Node TCP`, punched?.ratio, 0.95));
      continue;
    }
    const nat = row(s, 'native');
    out.push(atLeast(`${where}: native ≥ 0.95× minimal C splice relay`, ratio(nat, row(s, 'c-splice')), 0.95));
    out.push(atLeast(`${where}: native ≥ 1.1× haproxy full splice`, ratio(nat, row(s, 'haproxy-splice')), 1.1));
    const cpu = nat?.cpuPerGB?.median ?? null;
    out.push({ target: `${where}: native ≤ 0.25 relay CPU-s/GB`, value: cpu === null ? null : fmt(cpu), met: cpu === null ? null : cpu <= 0.25 });
  }
  return out;
}

/**
 * The report of a throughput section.
 * @param {Awaited<ReturnType<typeof run>>} section
 * @param {(header: string[], rows: string[][]) => string} [table] text (terminal) or Markdown table renderer
 */
export function report(section, table = textTable) {
  const out = [];
  for (const group of ['node', 'relay']) {
    const sc = section.scenarios.filter((s) => s.group === group);
    if (sc.length === 0) continue;
    const cpuHead = group === 'node' ? 'both ends CPU s/GB' : 'relay CPU s/GB';
    const rows = [];
    for (const s of sc) {
      for (const r of s.rows) {
        rows.push([
          r.label,
          `${s.streams}`,
          s.direction,
          r.available ? fmtSummary(r.gbps) : 'not available',
          r.ratio ? `${fmtSummary(r.ratio)}` : r.available && r.gbps ? '1 (ref)' : '',
          r.available ? fmtSummary(r.cpuPerGB) : '',
          r.note && !r.available ? r.note : r.errors ? `${r.errors.length} failed: ${r.errors[0].slice(0, 80)}` : '',
        ]);
      }
    }
    out.push(
      group === 'node'
        ? `Throughput, Node sockets on both ends (Gbit/s, median (min–max) of ${section.options.runs} × ${section.options.seconds} s)`
        : `Throughput through relays, iperf3 client → relay → iperf3 server (Gbit/s, median (min–max) of ${section.options.runs} × ${section.options.seconds} s)`,
    );
    out.push(table(['path', 'streams', 'dir', 'Gbit/s', '× ref', cpuHead, 'note'], rows));
    out.push('');
  }
  if (section.targets.length) {
    out.push('Targets (medians of per-run ratios)');
    out.push(
      table(
        ['target', 'measured', 'met'],
        section.targets.map((t) => [t.target, t.value ?? '—', t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
      ),
    );
  }
  for (const n of section.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

if (isMain(import.meta.url)) {
  import('./lib/cli.mjs').then((m) => m.main(['--only', 'throughput', ...process.argv.slice(2)]));
}
