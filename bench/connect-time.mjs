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
  ROOT,
  fmt,
  forkChild,
  importDist,
  isMain,
  log,
  quantile,
  request,
  stopChild,
  summarize,
  table as textTable,
} from './lib/common.mjs';
import { num, numList, strList } from './lib/cli.mjs';

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

/** Median (the one of summarize()), p90, min and max. @param {number[]} v */
function stats(v) {
  const s = summarize(v);
  return s && { median: s.median, p90: quantile(v, 0.9), min: s.min, max: s.max };
}

/** A tally by key (attempts by how they connected, failures by code). */
class Tally {
  /** @type {Record<string, number>} */
  counts = {};
  /** @param {string | undefined} k */
  add(k) {
    if (k) this.counts[k] = (this.counts[k] ?? 0) + 1;
  }
  /** The counts, or undefined when there are none. */
  get value() {
    return Object.keys(this.counts).length ? this.counts : undefined;
  }
}

/** A series in ms as RTTs, when the RTT is known. @param {{ median: number, p90: number } | null | undefined} s @param {number | null} rtt */
const inRtts = (s, rtt) => (s && rtt ? { median: s.median / rtt, p90: s.p90 / rtt } : null);

/**
 * Runs `dial` up to `n` times within the budget, or until `giveUp(attempted, ok)`; each call reports a dial → first
 * byte in ms or throws.
 * @param {number} n @param {number} budgetSeconds @param {(how: Tally) => Promise<number>} dial
 * @param {(attempted: number, ok: number) => boolean} [giveUp]
 */
async function series(n, budgetSeconds, dial, giveUp = () => false) {
  /** @type {number[]} */
  const ms = [];
  const how = new Tally();
  const failures = new Tally();
  const end = Date.now() + budgetSeconds * 1000;
  let attempted = 0;
  while (attempted < n && Date.now() < end && !giveUp(attempted, ms.length)) {
    attempted++;
    try {
      ms.push(await dial(how));
    } catch (e) {
      failures.add(/** @type {any} */ (e).code ?? 'ERROR');
    }
  }
  return { attempted, ok: ms.length, ms: stats(ms), how: how.value ?? {}, failures: failures.value };
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
  const server = net.createServer((s) => s.on('error', () => {}).end(Buffer.of(1)));
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  const port = /** @type {net.AddressInfo} */ (server.address()).port;
  const r = await series(opts.iterations, opts.budgetSeconds, async () => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port }).on('error', () => {});
    await once(s, 'data');
    s.destroy();
    return performance.now() - t0;
  });
  server.close();
  return { scope: 'loopback', path: 'tcp-connect', label: 'net.connect (reference)', rttMs: null, ...r };
}

/** @param {ConnectOptions} opts @returns {Promise<Row>} */
async function loopbackPunch(opts) {
  const { bindReusable, punchDetailed } = await importDist('index.js');
  const r = await series(opts.iterations, opts.budgetSeconds, async (how) => {
    const [pa, pb] = await Promise.all([bindReusable({ address: '127.0.0.1' }), bindReusable({ address: '127.0.0.1' })]);
    /** @type {import('node:net').Socket[]} */
    const sockets = [];
    const punched = (/** @type {any} */ r) => (sockets.push(r.socket.on('error', () => {})), r);
    try {
      const t0 = performance.now();
      const a = punchDetailed({ port: pa, remote: { host: '127.0.0.1', port: pb.port }, timeoutMs: 5000 }).then(punched);
      const b = punchDetailed({ port: pb, remote: { host: '127.0.0.1', port: pa.port }, timeoutMs: 5000 }).then(punched);
      b.then((/** @type {any} */ r) => r.socket.write(Buffer.of(1)), () => {});
      const ra = await a;
      await once(ra.socket, 'data');
      const ms = performance.now() - t0;
      how.add(`a:${ra.via}`);
      how.add(`b:${(await b).via}`);
      return ms;
    } finally {
      for (const s of sockets) s.destroy();
      pa.close();
      pb.close();
    }
  });
  return { scope: 'loopback', path: 'punch-pair', label: 'punch() from both ends', rttMs: null, ...r };
}

/** On loopback direct-first is direct (punching never fails there): it is timed in the lab, as the fallback. */
const loopbackStrategies = (/** @type {ConnectOptions} */ opts) => opts.strategies.filter((s) => s !== 'direct-first');

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

/**
 * Registers agents a and b as peers `${prefix}-a` and `${prefix}-b` on a rendezvous server started in `rendezvous`
 * (listening on `host`, reached at `reachAt`).
 * @param {import('node:child_process').ChildProcess[]} procs rendezvous, a, b
 * @param {string} host @param {string} reachAt @param {string} prefix
 */
async function peerPair([rendezvous, a, b], host, reachAt, prefix) {
  const { port } = await request(rendezvous, 'start', { host, secret: SECRET });
  const server = `${reachAt}:${port}`;
  await Promise.all([a, b].map((agent, i) => request(agent, 'peer', { server, id: `${prefix}-${'ab'[i]}`, secret: SECRET })));
}

/** @param {ConnectOptions} opts @returns {Promise<Row[]>} */
async function loopbackPeer(opts) {
  const lifetimeMs = (opts.budgetSeconds * opts.strategies.length + 60) * 1000;
  const procs = [RENDEZVOUS, AGENT, AGENT].map((script) => forkChild(script, [], { lifetimeMs }));
  const [, a, b] = procs;
  const strategies = loopbackStrategies(opts);
  const label = (/** @type {string} */ s) => `Peer.dial, strategy ${s}`;
  try {
    await peerPair(procs, '127.0.0.1', '127.0.0.1', 'bench');
    /** @type {Row[]} */
    const rows = [];
    for (const strategy of strategies) {
      log(`connect: loopback Peer.dial ${strategy}`);
      const r = await dialSeries(a, b, 'bench-b', strategy, opts.peerIterations, opts.budgetSeconds);
      rows.push({ scope: 'loopback', path: `peer-${strategy}`, label: label(strategy), rttMs: null, ...r });
    }
    return rows;
  } catch (e) {
    const note = `failed: ${/** @type {Error} */ (e).message.split('\n')[0]}`;
    return strategies.map((s) => ({ scope: 'loopback', path: `peer-${s}`, label: label(s), rttMs: null, attempted: 0, ok: 0, ms: null, note }));
  } finally {
    await Promise.all(procs.map((p) => stopChild(p)));
  }
}

/**
 * Times up to `n` dials from agent a to peer `target` (agent b accepts and writes one byte).
 * @param {import('node:child_process').ChildProcess} a @param {import('node:child_process').ChildProcess} b
 * @param {string} target @param {string} strategy @param {number} n @param {number} budgetSeconds
 */
async function dialSeries(a, b, target, strategy, n, budgetSeconds) {
  /** @type {number[]} */
  const resolved = [];
  /** @type {Record<string, number[]>} */
  const timings = {};
  let lastError = '';
  // An unknown strategy fails the same way every time: stop after a few.
  const giveUp = (/** @type {number} */ attempted, /** @type {number} */ ok) => ok === 0 && attempted >= 3;
  const r = await series(n, budgetSeconds, async (how) => {
    const d = await request(a, 'dial', { target, strategy, timeoutMs: 15_000 }, 30_000);
    await Promise.all([request(a, 'close-sockets'), request(b, 'close-sockets')]);
    if (!d.ok) {
      lastError = `${d.code}: ${String(d.message ?? '').split('\n')[0]}`;
      throw Object.assign(new Error(lastError), { code: d.code });
    }
    resolved.push(d.ms);
    for (const [k, v] of Object.entries(d.timings ?? {})) if (typeof v === 'number') (timings[k] ??= []).push(v);
    how.add([d.path, d.mode, d.attempt > 1 ? `attempt ${d.attempt}` : undefined].filter(Boolean).join('/'));
    return d.firstByteMs;
  }, giveUp);
  const phases = Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, summarize(v)?.median ?? NaN]));
  const note =
    r.ok > 0 ? undefined
    : /options\.strategy/.test(lastError) ? `not available: Peer has no "${strategy}" strategy`
    : `no successful dial (${lastError.slice(0, 120)})`;
  return { ...r, resolveMs: stats(resolved), phases: Object.keys(phases).length ? phases : undefined, note };
}

// ------------------------------------------------------------------ NAT lab

/** The lab module (test/lab/topology.js), or a note saying why this process cannot run it. */
async function findLab() {
  if (process.getuid?.() !== 0) return { lab: null, note: 'the NAT lab needs root (network namespaces)' };
  const mod = await import(new URL(`file://${path.join(ROOT, 'test', 'lab', 'topology.js')}`).href);
  const pre = mod.labPrerequisites?.({ delay: true });
  if (pre && !pre.ok) return { lab: null, note: `lab prerequisites missing: ${pre.missing.join(', ')}` };
  return { lab: mod, note: '' };
}

/**
 * @param {ConnectOptions} opts @param {string[]} notes @returns {Promise<Row[]>}
 */
async function labRows(opts, notes) {
  const found = await findLab();
  if (!found.lab) {
    notes.push(`NAT lab: ${found.note}`);
    return [];
  }
  const { createLab } = found.lab;
  /** @type {Row[]} */
  const rows = [];
  for (const rtt of opts.rtts) {
    // Each host's link adds rtt/2 to a round trip, so any two of a, b and the server are `rtt` apart; a path
    // crosses two links, each drops half of the path's loss.
    const shape = { delayMs: rtt / 2, ...(opts.lossPct > 0 ? { lossPct: opts.lossPct / 2 } : {}) };
    const spec = (/** @type {string} */ bNat) => ({ a: { nat: 'cone', ...shape }, b: { nat: bNat, ...shape }, server: shape });
    const base = { scope: /** @type {const} */ ('lab'), rttMs: rtt, lossPct: opts.lossPct };
    log(`connect: lab raw punch, RTT ${rtt} ms, loss ${opts.lossPct} %`);
    rows.push({ ...base, path: 'lab-punch', label: 'raw punch() (cone/cone)', ...(await inLab(createLab, spec('cone'), (lab) => labPunch(lab, rtt, opts))) });
    for (const { name, strategy, bNat } of LAB_PEER_CASES) {
      if (!opts.strategies.includes(strategy)) continue;
      log(`connect: lab Peer.dial ${strategy}, RTT ${rtt} ms`);
      const row = await inLab(createLab, spec(bNat), async (lab, a, b) => {
        const rendezvous = lab.fork('server', RENDEZVOUS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        await peerPair([rendezvous, a, b], '0.0.0.0', lab.server.ip, 'lab');
        return dialSeries(a, b, 'lab-b', strategy, opts.labIterations, opts.budgetSeconds);
      });
      rows.push({ ...base, path: `lab-peer-${name}`, label: `Peer.dial ${strategy} (cone/${bNat})`, ...row });
    }
  }
  for (const r of rows) {
    r.inRtts = inRtts(r.ms, r.rttMs);
    if (r.resolveMs) r.resolveRtts = inRtts(r.resolveMs, r.rttMs);
  }
  return rows;
}

/**
 * Runs `fn` in a fresh lab with a peer agent in each of the peers' namespaces (they die with the lab); a failure
 * comes back as a row with a note.
 * @param {(spec: any) => Promise<any>} createLab @param {any} spec
 * @param {(lab: any, a: import('node:child_process').ChildProcess, b: import('node:child_process').ChildProcess) => Promise<any>} fn
 */
async function inLab(createLab, spec, fn) {
  const lab = await createLab(spec);
  try {
    const [a, b] = ['a', 'b'].map((node) => lab.fork(node, AGENT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    return await fn(lab, a, b);
  } catch (e) {
    return { attempted: 0, ok: 0, ms: null, note: `failed: ${/** @type {Error} */ (e).message.split('\n')[0]}` };
  } finally {
    await lab.destroy();
  }
}

/**
 * Starts a Node script in a lab namespace and waits for its "listening <port>" line.
 * @param {any} lab @param {string} node @param {string} script @returns {Promise<number>}
 */
async function labListener(lab, node, script) {
  const child = lab.spawn(node, [process.execPath, script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = readline.createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start`)), 10_000);
    lines.on('line', (l) => {
      const m = /^listening (\d+)/.exec(l);
      if (m) clearTimeout(timer), resolve(Number(m[1]));
    });
    child.once('exit', (/** @type {number} */ c) => reject(new Error(`${script} exited ${c}`)));
  });
}

/**
 * Raw punch between the lab's two peers: each learns its mapping from the observer, then both punch at once.
 * @param {any} lab @param {number} rtt @param {ConnectOptions} opts
 */
async function labPunch(lab, rtt, opts) {
  const [a, b] = ['a', 'b'].map((node) => lab.fork(node, AGENT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const server = { host: lab.server.ip, port: await labListener(lab, 'server', OBSERVER) };
  /** @type {number[]} */
  const rttSeen = [];
  const r = await series(opts.labIterations, opts.budgetSeconds, async (how) => {
    const [oa, ob] = await Promise.all([request(a, 'observe', { server }), request(b, 'observe', { server })]);
    rttSeen.push(oa.rttMs, ob.rttMs);
    const timeoutMs = 5000 + rtt * 20;
    const [ra, rb] = await Promise.all([
      request(a, 'punch', { remote: ob.observed, role: 'a', timeoutMs }, timeoutMs + 10_000),
      request(b, 'punch', { remote: oa.observed, role: 'b', timeoutMs }, timeoutMs + 10_000),
    ]);
    if (!(ra.ok && rb.ok)) throw Object.assign(new Error('punch failed'), { code: ra.code ?? rb.code ?? 'ERROR' });
    how.add(`a:${ra.via}/b:${rb.via}`);
    if (ra.attempts > 1 || rb.attempts > 1) how.add('connect() retried');
    return ra.firstByteMs;
  });
  return { ...r, measuredRttMs: summarize(rttSeen)?.median ?? null };
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
    fmt(r.ms?.median),
    fmt(r.ms?.p90),
    r.ms ? `${fmt(r.ms.min, 2)}–${fmt(r.ms.max, 2)}` : '—',
    fmt(r.resolveRtts?.median),
    fmt(r.inRtts?.median),
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
