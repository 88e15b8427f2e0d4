// @ts-check
/**
 * Question 2: how long from dial() to the first byte?
 *
 * Loopback (always):
 *   - tcp-connect: net.connect → the server writes one byte → first byte at the client (the floor);
 *   - punch-pair: punch() from both ends at once (ports bound beforehand, as a peer's are) → the far side writes
 *     one byte → first byte;
 *   - peer-<strategy>: Peer.dial(id, { strategy }) through a local rendezvous server (strategies direct, relay,
 *     relay-first) → the accepting peer writes one byte → first byte. Needs lib/server and lib/peer built.
 * NAT lab (`--lab`, root; test/lab/topology.js), links shaped so that every pair of hosts is `rtt` ms apart:
 *   - lab-punch: raw punch() between two cone NATs, each side having learnt its public mapping from an observer
 *     in the server namespace, both started at the same moment (no signalling: the floor of a direct dial);
 *   - lab-peer-direct (strategy direct, cone/cone), lab-peer-fallback (direct-first, cone/symmetric: punching
 *     fails, the relay carries the stream), lab-peer-relay (relay, cone/cone), lab-peer-relay-first
 *     (relay-first, cone/cone): Peer.dial through a rendezvous server in the lab. `--loss` drops packets on every
 *     lab link.
 * Figures: median, p90, min, max in ms over the successful dials, and in RTTs where the RTT is known.
 */
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import {
  BENCH_DIR,
  fmt,
  forkChild,
  importDist,
  isMain,
  log,
  quantile,
  request,
  stopChild,
  table as textTable,
} from './lib/common.mjs';
import { num, numList, strList } from './lib/cli.mjs';
import { findLab, findPeer, findStartServer } from './lib/modules.mjs';

const AGENT = path.join(BENCH_DIR, 'lib', 'peer-agent.mjs');
const OBSERVER = path.join(BENCH_DIR, 'lib', 'lab-observer.mjs');
const RENDEZVOUS = path.join(BENCH_DIR, 'lib', 'rendezvous-proc.mjs');
const SECRET = 'tcp-punch-bench-secret';

/**
 * @typedef {object} ConnectOptions
 * @property {number} iterations loopback dials per figure
 * @property {number} peerIterations Peer.dial dials per figure (loopback)
 * @property {boolean} lab
 * @property {number[]} rtts lab RTTs in ms
 * @property {number} lossPct lab packet loss per path (a → b, a → server) in %
 * @property {number} labIterations dials per lab figure
 * @property {string[]} strategies Peer.dial strategies to time
 * @property {number} budgetSeconds wall-clock cap of each figure
 */

/** @type {ConnectOptions} */
export const DEFAULTS = {
  iterations: 200,
  peerIterations: 50,
  lab: false,
  rtts: [0, 20, 100],
  lossPct: 0,
  labIterations: 15,
  strategies: ['direct', 'direct-first', 'relay', 'relay-first'],
  budgetSeconds: 60,
};
/** @type {ConnectOptions} */
export const FULL = { ...DEFAULTS, iterations: 500, peerIterations: 200, lab: true, labIterations: 40, budgetSeconds: 120 };

/** @param {Record<string, any>} flags @param {boolean} full @returns {ConnectOptions} */
export function options(flags, full) {
  const d = full ? FULL : DEFAULTS;
  const iterations = Math.round(num(flags.iterations, d.iterations, 100_000));
  return {
    ...d,
    iterations,
    peerIterations: flags.iterations ? Math.max(1, Math.round(iterations / 4)) : d.peerIterations,
    labIterations: flags.iterations ? Math.max(1, Math.round(iterations / 10)) : d.labIterations,
    lab: flags.lab ?? (d.lab && process.getuid?.() === 0),
    rtts: numList(flags.rtts, d.rtts),
    lossPct: num(flags.loss, d.lossPct, 100),
    strategies: /** @type {string[]} */ (strList(flags.strategies, d.strategies)),
  };
}

/**
 * @typedef {object} Row
 * @property {'loopback' | 'lab'} scope
 * @property {string} path
 * @property {string} label
 * @property {number | null} rttMs configured RTT between the hosts (lab), null on loopback
 * @property {number | null} [measuredRttMs] median TCP connect time to the observer (lab)
 * @property {number} attempted
 * @property {number} ok
 * @property {{ median: number, p90: number, min: number, max: number } | null} ms dial → first byte
 * @property {{ median: number, p90: number } | null} [inRtts] dial → first byte in RTTs
 * @property {{ median: number, p90: number, min: number, max: number } | null} [resolveMs] Peer.dial: dial → resolved
 * @property {{ median: number, p90: number } | null} [resolveRtts] the same in RTTs
 * @property {number} [lossPct] lab: packet loss per path in %
 * @property {Record<string, number>} [how] e.g. via connect/accept, or path/mode of Peer.dial
 * @property {Record<string, number>} [failures] by error code
 * @property {Record<string, number>} [phases] Peer.dial: median of each DialTimings field (ms)
 * @property {string} [note]
 */

/** @param {number[]} v */
function stats(v) {
  if (v.length === 0) return null;
  return { median: quantile(v, 0.5), p90: quantile(v, 0.9), min: Math.min(...v), max: Math.max(...v) };
}

/** @param {Record<string, number>} o @param {string | undefined} k */
function bump(o, k) {
  if (k) o[k] = (o[k] ?? 0) + 1;
}

/** @param {ConnectOptions} opts */
export async function run(opts) {
  /** @type {Row[]} */
  const rows = [];
  /** @type {string[]} */
  const notes = [];
  log('connect: loopback tcp-connect');
  rows.push(await loopbackTcp(opts));
  log('connect: loopback punch-pair');
  rows.push(await loopbackPunch(opts));
  rows.push(...(await loopbackPeer(opts)));
  if (opts.lab) rows.push(...(await labRows(opts, notes)));
  else notes.push('NAT lab figures not measured (run with --lab as root, or --full)');
  return { name: 'connect', options: opts, rows, targets: targets(rows), notes };
}

// ------------------------------------------------------------------ loopback

/** @param {ConnectOptions} opts @returns {Promise<Row>} */
async function loopbackTcp(opts) {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(Buffer.of(1));
  });
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  const port = /** @type {net.AddressInfo} */ (server.address()).port;
  /** @type {number[]} */
  const ms = [];
  const end = Date.now() + opts.budgetSeconds * 1000;
  let attempted = 0;
  for (let i = 0; i < opts.iterations && Date.now() < end; i++) {
    attempted++;
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    await once(s, 'data');
    ms.push(performance.now() - t0);
    s.destroy();
  }
  server.close();
  return { scope: 'loopback', path: 'tcp-connect', label: 'net.connect (reference)', rttMs: null, attempted, ok: ms.length, ms: stats(ms) };
}

/** @param {ConnectOptions} opts @returns {Promise<Row>} */
async function loopbackPunch(opts) {
  const { bindReusable, punchDetailed } = await importDist('index.js');
  /** @type {number[]} */
  const ms = [];
  /** @type {Record<string, number>} */
  const how = {};
  /** @type {Record<string, number>} */
  const failures = {};
  const end = Date.now() + opts.budgetSeconds * 1000;
  let attempted = 0;
  for (let i = 0; i < opts.iterations && Date.now() < end; i++) {
    attempted++;
    const [pa, pb] = await Promise.all([bindReusable({ address: '127.0.0.1' }), bindReusable({ address: '127.0.0.1' })]);
    /** @type {import('node:net').Socket[]} */
    const sockets = [];
    try {
      const t0 = performance.now();
      const a = punchDetailed({ port: pa, remote: { host: '127.0.0.1', port: pb.port }, timeoutMs: 5000 });
      const b = punchDetailed({ port: pb, remote: { host: '127.0.0.1', port: pa.port }, timeoutMs: 5000 });
      const rb = b.then((/** @type {any} */ r) => {
        sockets.push(r.socket);
        r.socket.on('error', () => {});
        r.socket.write(Buffer.of(1));
        return r;
      });
      const ra = await a;
      sockets.push(ra.socket);
      ra.socket.on('error', () => {});
      await once(ra.socket, 'data');
      ms.push(performance.now() - t0);
      const rbv = await rb;
      bump(how, `a:${ra.via}`);
      bump(how, `b:${rbv.via}`);
    } catch (e) {
      bump(failures, /** @type {any} */ (e).code ?? 'ERROR');
    } finally {
      for (const s of sockets) s.destroy();
      pa.close();
      pb.close();
    }
  }
  return {
    scope: 'loopback',
    path: 'punch-pair',
    label: 'punch() from both ends',
    rttMs: null,
    attempted,
    ok: ms.length,
    ms: stats(ms),
    how,
    failures: Object.keys(failures).length ? failures : undefined,
  };
}

/** On loopback direct-first is direct (punching never fails there): it is timed in the lab, as the fallback. */
const loopbackStrategies = (/** @type {ConnectOptions} */ opts) => opts.strategies.filter((s) => s !== 'direct-first');

/** @param {string} strategy */
const peerLabel = (strategy) => `Peer.dial, strategy ${strategy}`;

/**
 * The lab's Peer.dial cases: direct punching between cone NATs, the fallback to the relay when one side is behind
 * a symmetric NAT (strategy direct-first), and relay-first (relayed at once, upgraded to direct later).
 */
const LAB_PEER_CASES = [
  { name: 'direct', strategy: 'direct', bNat: 'cone' },
  { name: 'fallback', strategy: 'direct-first', bNat: 'symmetric' },
  { name: 'relay', strategy: 'relay', bNat: 'cone' },
  { name: 'relay-first', strategy: 'relay-first', bNat: 'cone' },
];

/** @param {ConnectOptions} opts @returns {Promise<Row[]>} */
async function loopbackPeer(opts) {
  const [srv, peer] = await Promise.all([findStartServer(), findPeer()]);
  if (!srv.value || !peer.value) {
    const note = !srv.value ? `rendezvous server ${srv.note}` : `Peer ${peer.note}`;
    return loopbackStrategies(opts).map((s) => unavailableRow('loopback', `peer-${s}`, peerLabel(s), null, note));
  }
  const budget = (opts.budgetSeconds * opts.strategies.length + 60) * 1000;
  const rendezvous = forkChild(RENDEZVOUS, [], { lifetimeMs: budget });
  const a = forkChild(AGENT, [], { lifetimeMs: budget });
  const b = forkChild(AGENT, [], { lifetimeMs: budget });
  try {
    const { port } = await request(rendezvous, 'start', { host: '127.0.0.1', secret: SECRET, options: benchServerOptions() });
    const server = `127.0.0.1:${port}`;
    await Promise.all([
      request(a, 'peer', { server, id: 'bench-a', secret: SECRET }),
      request(b, 'peer', { server, id: 'bench-b', secret: SECRET }),
    ]);
    /** @type {Row[]} */
    const rows = [];
    for (const strategy of loopbackStrategies(opts)) {
      log(`connect: loopback Peer.dial ${strategy}`);
      rows.push(await dialSeries(a, b, 'bench-b', strategy, opts.peerIterations, opts.budgetSeconds, 'loopback', `peer-${strategy}`, peerLabel(strategy), null));
    }
    return rows;
  } catch (e) {
    const note = `failed: ${/** @type {Error} */ (e).message.split('\n')[0]}`;
    return loopbackStrategies(opts).map((s) => unavailableRow('loopback', `peer-${s}`, peerLabel(s), null, note));
  } finally {
    await Promise.all([stopChild(a), stopChild(b), stopChild(rendezvous)]);
  }
}

/** Server options for benchmarks: every client comes from one address, so the per-IP limits (the built-in relay's too) are raised. */
export function benchServerOptions() {
  return {
    maxConnections: 20_000,
    maxConnectionsPerIp: 20_000,
    connectionRatePerIp: 1_000_000,
    connectionBurstPerIp: 1_000_000,
    maxPendingPerPeer: 4096,
    maxCoordinations: 16_384,
    frameRate: 100_000,
    frameBurst: 100_000,
    relay: { limits: { maxSessions: 9900, maxSessionsPerIp: 20_000, maxSessionsPerPeer: 1000 } },
    // No NAT probe listeners: a registration then costs what it costs without the probe (four more connections
    // per peer with it); the lab rows turn them back on.
    natProbe: false,
  };
}

/**
 * Times `n` dials from agent a to peer `target` (agent b accepts and writes one byte).
 * @param {import('node:child_process').ChildProcess} a @param {import('node:child_process').ChildProcess} b
 * @param {string} target @param {string} strategy @param {number} n @param {number} budgetSeconds
 * @param {'loopback' | 'lab'} scope @param {string} p @param {string} label @param {number | null} rttMs
 * @returns {Promise<Row>}
 */
async function dialSeries(a, b, target, strategy, n, budgetSeconds, scope, p, label, rttMs) {
  /** @type {number[]} */
  const ms = [];
  /** @type {number[]} */
  const resolved = [];
  /** @type {Record<string, number>} */
  const how = {};
  /** @type {Record<string, number>} */
  const failures = {};
  const end = Date.now() + budgetSeconds * 1000;
  let attempted = 0;
  let lastError = '';
  /** @type {Record<string, number[]>} */
  const timings = {};
  for (let i = 0; i < n && Date.now() < end; i++) {
    attempted++;
    const r = await request(a, 'dial', { target, strategy, timeoutMs: 15_000 }, 30_000);
    if (r.ok) {
      ms.push(r.firstByteMs);
      resolved.push(r.ms);
      for (const [k, v] of Object.entries(r.timings ?? {})) if (typeof v === 'number') (timings[k] ??= []).push(v);
      bump(how, [r.path, r.mode, r.attempt > 1 ? `attempt ${r.attempt}` : undefined].filter(Boolean).join('/'));
    } else {
      bump(failures, r.code);
      lastError = `${r.code}: ${String(r.message ?? '').split('\n')[0]}`;
    }
    await Promise.all([request(a, 'close-sockets'), request(b, 'close-sockets')]);
    // An unknown strategy fails the same way every time: stop after a few.
    if (ms.length === 0 && attempted >= 3) break;
  }
  /** @type {Record<string, number>} */
  const phases = {};
  for (const [k, v] of Object.entries(timings)) phases[k] = quantile(v, 0.5);
  const row = {
    scope,
    path: p,
    label,
    rttMs,
    attempted,
    ok: ms.length,
    ms: stats(ms),
    resolveMs: stats(resolved),
    how,
    phases: Object.keys(phases).length ? phases : undefined,
    failures: Object.keys(failures).length ? failures : undefined,
  };
  if (ms.length === 0) {
    const unknown = /options\.strategy/.test(lastError);
    Object.assign(row, {
      note: unknown
        ? `not available: Peer has no "${strategy}" strategy`
        : `no successful dial (${lastError.slice(0, 120)})`,
    });
  }
  return /** @type {Row} */ (row);
}

/**
 * @param {'loopback' | 'lab'} scope @param {string} p @param {string} label @param {number | null} rttMs @param {string} note
 * @returns {Row}
 */
function unavailableRow(scope, p, label, rttMs, note) {
  return { scope, path: p, label, rttMs, attempted: 0, ok: 0, ms: null, note };
}

// ------------------------------------------------------------------ NAT lab

/**
 * @param {ConnectOptions} opts @param {string[]} notes @returns {Promise<Row[]>}
 */
async function labRows(opts, notes) {
  const labMod = await findLab();
  if (!labMod.value) {
    notes.push(`NAT lab: ${labMod.note}`);
    return [];
  }
  const { createLab } = labMod.value;
  const [srv, peer] = await Promise.all([findStartServer(), findPeer()]);
  const peerNote = !srv.value ? `rendezvous server ${srv.note}` : !peer.value ? `Peer ${peer.note}` : null;
  /** @type {Row[]} */
  const rows = [];
  for (const rtt of opts.rtts) {
    // Each host's link adds rtt/2 to a round trip, so any two of a, b and the server are `rtt` apart.
    const half = rtt / 2;
    // A path crosses two links: each drops half of the path's loss.
    const shape = { delayMs: half, ...(opts.lossPct > 0 ? { lossPct: opts.lossPct / 2 } : {}) };
    log(`connect: lab raw punch, RTT ${rtt} ms, loss ${opts.lossPct} %`);
    rows.push(await labPunch(createLab, { a: { nat: 'cone', ...shape }, b: { nat: 'cone', ...shape }, server: shape }, rtt, opts));
    for (const { name, strategy, bNat } of LAB_PEER_CASES) {
      if (!opts.strategies.includes(strategy)) continue;
      const p = `lab-peer-${name}`;
      const label = `Peer.dial ${strategy} (cone/${bNat})`;
      if (peerNote) {
        rows.push(unavailableRow('lab', p, label, rtt, peerNote));
        continue;
      }
      log(`connect: lab Peer.dial ${strategy}, RTT ${rtt} ms`);
      rows.push(await labPeer(createLab, { a: { nat: 'cone', ...shape }, b: { nat: bNat, ...shape }, server: shape }, rtt, strategy, p, label, opts));
    }
  }
  return rows;
}

/**
 * Starts a Node script in a lab namespace and waits for its "listening <port>" line.
 * @param {any} lab @param {string} node @param {string} script
 */
async function labListener(lab, node, script) {
  const child = lab.spawn(node, [process.execPath, script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const rl = readline.createInterface({ input: child.stdout });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start`)), 10_000);
    rl.on('line', (l) => {
      const m = /^listening (\d+)/.exec(l);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (/** @type {number} */ c) => reject(new Error(`${script} exited ${c}`)));
  });
  return { child, port: /** @type {number} */ (port) };
}

/**
 * Forks a peer agent inside a lab namespace; it dies with the lab (lab.destroy()).
 * @param {any} lab @param {string} node
 * @returns {import('node:child_process').ChildProcess}
 */
function labAgent(lab, node) {
  const child = lab.fork(node, AGENT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30 * 60_000);
  timer.unref();
  child.once('exit', () => clearTimeout(timer));
  return child;
}

/**
 * Raw punch between the lab's two peers at one RTT.
 * @param {(spec: any) => Promise<any>} createLab @param {any} spec @param {number} rtt @param {ConnectOptions} opts
 * @returns {Promise<Row>}
 */
async function labPunch(createLab, spec, rtt, opts) {
  const lab = await createLab(spec);
  /** @type {number[]} */
  const ms = [];
  /** @type {number[]} */
  const rttSeen = [];
  /** @type {Record<string, number>} */
  const how = {};
  /** @type {Record<string, number>} */
  const failures = {};
  let attempted = 0;
  try {
    const obs = await labListener(lab, 'server', OBSERVER);
    const a = labAgent(lab, 'a');
    const b = labAgent(lab, 'b');
    const server = { host: lab.server.ip, port: obs.port };
    const end = Date.now() + opts.budgetSeconds * 1000;
    for (let i = 0; i < opts.labIterations && Date.now() < end; i++) {
      attempted++;
      const [oa, ob] = await Promise.all([request(a, 'observe', { server }), request(b, 'observe', { server })]);
      rttSeen.push(oa.rttMs, ob.rttMs);
      const timeoutMs = 5000 + rtt * 20;
      const [ra, rb] = await Promise.all([
        request(a, 'punch', { remote: ob.observed, role: 'a', timeoutMs }, timeoutMs + 10_000),
        request(b, 'punch', { remote: oa.observed, role: 'b', timeoutMs }, timeoutMs + 10_000),
      ]);
      if (ra.ok && rb.ok) {
        ms.push(ra.firstByteMs);
        bump(how, `a:${ra.via}/b:${rb.via}`);
        if (ra.attempts > 1 || rb.attempts > 1) bump(how, 'connect() retried');
      } else bump(failures, ra.code ?? rb.code ?? 'ERROR');
    }
  } finally {
    await lab.destroy();
  }
  const s = stats(ms);
  return {
    scope: 'lab',
    path: 'lab-punch',
    label: 'raw punch() (cone/cone)',
    rttMs: rtt,
    measuredRttMs: rttSeen.length ? quantile(rttSeen, 0.5) : null,
    attempted,
    ok: ms.length,
    ms: s,
    inRtts: s && rtt > 0 ? { median: s.median / rtt, p90: s.p90 / rtt } : null,
    lossPct: opts.lossPct,
    how,
    failures: Object.keys(failures).length ? failures : undefined,
  };
}

/**
 * Peer.dial through a rendezvous server in the lab.
 * @param {(spec: any) => Promise<any>} createLab @param {any} spec @param {number} rtt @param {string} strategy
 * @param {string} p @param {string} label @param {ConnectOptions} opts
 * @returns {Promise<Row>}
 */
async function labPeer(createLab, spec, rtt, strategy, p, label, opts) {
  const lab = await createLab(spec);
  try {
    const rendezvous = lab.fork('server', RENDEZVOUS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    // The default NAT probe: a symmetric side then goes to the relay at once (the fallback row).
    const { natProbe: _off, ...options } = benchServerOptions();
    const { port } = await request(rendezvous, 'start', { host: '0.0.0.0', secret: SECRET, options });
    const server = `${lab.server.ip}:${port}`;
    const a = labAgent(lab, 'a');
    const b = labAgent(lab, 'b');
    await Promise.all([
      request(a, 'peer', { server, id: 'lab-a', secret: SECRET }),
      request(b, 'peer', { server, id: 'lab-b', secret: SECRET }),
    ]);
    const row = await dialSeries(a, b, 'lab-b', strategy, opts.labIterations, opts.budgetSeconds, 'lab', p, label, rtt);
    row.lossPct = opts.lossPct;
    if (row.ms && rtt > 0) row.inRtts = { median: row.ms.median / rtt, p90: row.ms.p90 / rtt };
    if (row.resolveMs && rtt > 0) row.resolveRtts = { median: row.resolveMs.median / rtt, p90: row.resolveMs.p90 / rtt };
    return row;
  } catch (e) {
    return unavailableRow('lab', p, label, rtt, `failed: ${/** @type {Error} */ (e).message.split('\n')[0]}`);
  } finally {
    await lab.destroy();
  }
}

// ------------------------------------------------------------------ report

/**
 * The floor of a dial with a rendezvous in the loop, in RTTs: ½ for `connect` to reach the server, ½ for its
 * instruction to reach both peers, 1 for the crossing SYNs, ½ for the other side's proof (dial resolved); ½ more
 * for a byte the other side writes at once (first byte). A raw punch with no signalling: 1 + ½.
 * @param {Row} r @returns {{ resolve: number | null, firstByte: number } | null}
 */
export function floorOf(r) {
  if (r.scope !== 'lab' || !r.rttMs) return null;
  if (r.path === 'lab-punch') return { resolve: null, firstByte: 1.5 };
  return { resolve: 2.5, firstByte: 3 };
}

/** @param {Row[]} rows */
function targets(rows) {
  const out = [];
  for (const r of rows.filter((x) => x.scope === 'lab' && x.path !== 'lab-punch' && x.path !== 'lab-peer-fallback' && x.rttMs && x.ms)) {
    const rtt = /** @type {number} */ (r.rttMs);
    const ms = /** @type {NonNullable<Row['ms']>} */ (r.ms);
    const lossy = (r.lossPct ?? 0) > 0;
    if (lossy) {
      out.push({ target: `${r.label}: first byte within 3.5 RTT median (RTT ${rtt} ms, ${r.lossPct} % loss)`, value: `${fmt(ms.median / rtt, 2)} RTT`, met: ms.median <= 3.5 * rtt });
      continue;
    }
    if (r.resolveMs) {
      const limit = 2.5 * rtt + 10;
      out.push({ target: `${r.label}: resolved within 2.5 RTT + 10 ms (RTT ${rtt} ms)`, value: `${fmt(r.resolveMs.median, 1)} ms median`, met: r.resolveMs.median <= limit });
    }
    out.push({ target: `${r.label}: first byte within 3 RTT + 10 ms (RTT ${rtt} ms)`, value: `${fmt(ms.median, 1)} ms median`, met: ms.median <= 3 * rtt + 10 });
  }
  return out;
}

/**
 * @param {Awaited<ReturnType<typeof run>>} section
 * @param {(header: string[], rows: string[][]) => string} [table] text (terminal) or Markdown table renderer
 */
export function report(section, table = textTable) {
  const rows = section.rows.map((r) => [
    r.scope,
    r.label,
    r.rttMs === null ? '—' : `${r.rttMs}`,
    `${r.ok}/${r.attempted}`,
    r.ms ? fmt(r.ms.median, 2) : '—',
    r.ms ? fmt(r.ms.p90, 2) : '—',
    r.ms ? `${fmt(r.ms.min, 2)}–${fmt(r.ms.max, 2)}` : '—',
    r.resolveRtts ? fmt(r.resolveRtts.median, 2) : '—',
    r.inRtts ? fmt(r.inRtts.median, 2) : '—',
    floorOf(r) ? `${floorOf(r)?.resolve ?? '—'} / ${floorOf(r)?.firstByte}` : '—',
    r.note ??
      [
        r.how ? Object.entries(r.how).map(([k, v]) => `${k} ${v}`).join(', ') : '',
        r.phases ? `phases ${Object.entries(r.phases).filter(([k]) => k !== 'totalMs').map(([k, v]) => `${k.replace(/Ms$/, '')} ${fmt(v, 1)}`).join(' ')}` : '',
        r.failures ? `failed: ${JSON.stringify(r.failures)}` : '',
      ]
      .filter(Boolean)
      .join('; '),
  ]);
  const loss = section.options?.lossPct ? `, ${section.options.lossPct} % loss per path in the lab` : '';
  const out = [`Time to connect: dial() → first byte (ms${loss}); RTTs: dial resolved and first byte, next to the floor`];
  out.push(table(['scope', 'path', 'RTT ms', 'ok', 'median', 'p90', 'min–max', 'RTTs resolved', 'RTTs 1st byte', 'floor', 'note'], rows));
  if (section.targets.length) {
    out.push('', table(['target', 'measured', 'met'], section.targets.map((t) => [t.target, t.value, t.met ? 'yes' : 'NO'])));
  }
  for (const n of section.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

if (isMain(import.meta.url)) {
  import('./lib/cli.mjs').then((m) => m.main(['--only', 'connect', ...process.argv.slice(2)]));
}
