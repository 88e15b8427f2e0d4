// @ts-check
/**
 * Question 3: how far does one process go? The figures are described in docs/BENCHMARKS.md §3: the relays'
 * session setup rate and idle sessions (each relay in its own process between a load process and an echo sink, so
 * that its fds, memory and CPU are its own; see lib/load-proc.mjs), and the rendezvous server's registrations and
 * coordinations (rendezvous-proc.mjs + swarm-proc.mjs).
 *
 * fd plan at 9,000 sessions (hard limit 20,000 per process): relay 18,000 sockets + its pool's pipes
 * (≤ 2 × max pipes); load process 9,000; sink process 9,000.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import {
  BENCH_DIR,
  fmt,
  forkChild,
  isMain,
  log,
  memInfo,
  nodeFlagsFrom,
  procFds,
  procRss,
  request,
  sleep,
  stopChild,
  summarize,
  fmtSummary,
  table as textTable,
  tcpSockMem,
  which,
} from './lib/common.mjs';
import { num, strList } from './lib/cli.mjs';
import { FD_HARD_LIMIT, RELAY_LABELS, startRelay } from './lib/relays.mjs';

const LOAD = path.join(BENCH_DIR, 'lib', 'load-proc.mjs');
const SWARM = path.join(BENCH_DIR, 'lib', 'swarm-proc.mjs');
const RENDEZVOUS = path.join(BENCH_DIR, 'lib', 'rendezvous-proc.mjs');
const SECRET = 'tcp-punch-bench-secret';

/**
 * @typedef {object} ScaleOptions
 * @property {string[]} relays relay kinds (see lib/relays.mjs)
 * @property {number} runs setup-rate runs, every relay once per run in a rotating order
 * @property {number} churn sessions opened and closed per setup-rate figure
 * @property {number} concurrency sessions in flight during setup
 * @property {number} sessions idle sessions held at once
 * @property {number} settleSeconds how long the idle sessions are held before the settled RSS figure
 * @property {number} peers peers registered on one rendezvous server
 * @property {number} dials coordinations timed (after {@link WARMUP_DIALS} untimed ones)
 * @property {number} budgetSeconds wall-clock cap of each load phase
 * @property {boolean} [pin] rendezvous: the server on CPU 0, the swarms on CPU 1 (needs taskset)
 */

/** The peers' keepalive interval (the server's default, set explicitly: the idle baseline spans one). */
const KEEPALIVE_MS = 20_000;

/** Coordinations run, untimed, before the timed ones. */
const WARMUP_DIALS = 300;

/** @type {ScaleOptions} */
export const DEFAULTS = {
  relays: ['service-native', 'service-js', 'native', 'js', 'pipe', 'haproxy-splice'],
  runs: 3,
  churn: 3000,
  concurrency: 50,
  sessions: 2000,
  settleSeconds: 30,
  peers: 2000,
  dials: 300,
  budgetSeconds: 60,
};
/** @type {ScaleOptions} */
export const FULL = { ...DEFAULTS, relays: ['service-native', 'service-js', 'native', 'js', 'pipe', 'socat', 'haproxy-splice', 'haproxy-nosplice'], runs: 5, churn: 10_000, sessions: 9000, peers: 10_000, dials: 1000, budgetSeconds: 180 };

/** @param {Record<string, any>} flags @param {boolean} full @returns {ScaleOptions} */
export function options(flags, full) {
  const d = full ? FULL : DEFAULTS;
  const relays = /** @type {string[]} */ (strList(flags.relays, d.relays));
  for (const r of relays) if (!(r in RELAY_LABELS) || r === 'direct') throw new Error(`unknown relay "${r}"`);
  return {
    ...d,
    relays,
    runs: Math.max(1, Math.round(num(flags.runs, d.runs, 20))),
    churn: Math.max(1, Math.round(num(flags.churn, d.churn, 1_000_000))),
    budgetSeconds: num(flags.budget, d.budgetSeconds, 3600),
    sessions: Math.round(num(flags.sessions, d.sessions, 9900, 0)),
    settleSeconds: num(flags.settle, d.settleSeconds, 600, 0),
    peers: Math.round(num(flags.peers, d.peers, 15_000, 0)),
    dials: Math.max(1, Math.round(num(flags.dials, d.dials, 100_000))),
    pin: !!flags.pin,
  };
}

/** @param {ScaleOptions} opts */
export async function run(opts) {
  /** @type {string[]} */
  const notes = [];
  const kinds = ['direct', ...opts.relays];
  /** @type {Map<string, any[]>} */
  const runs = new Map(kinds.map((k) => [k, []]));
  for (let r = 0; r < opts.runs; r++) {
    // Rotated so that no relay always runs first or last while the machine's load drifts.
    for (const kind of kinds.map((_, i) => kinds[(i + r) % kinds.length])) {
      log(`scale: setup rate, ${kind}, run ${r + 1}/${opts.runs}`);
      runs.get(kind)?.push(await setupRate(kind, opts));
    }
  }
  const setup = kinds.map((kind) => summarizeSetup(kind, runs));
  const idle = [];
  for (const kind of opts.sessions > 0 ? opts.relays : []) {
    if (kind === 'socat' && opts.sessions > 1000) {
      idle.push({ kind, label: RELAY_LABELS[kind], note: 'skipped: socat forks a process per session' });
      continue;
    }
    log(`scale: ${opts.sessions} idle sessions, ${kind}`);
    idle.push(await idleSessions(kind, opts));
  }
  notes.push(
    'relay service rows: tcp-punch RelayService + listenRelay (native pump: the addon holds the joins; JS pump: a net.Server); a session = two clients joining with a token pair, one byte each way; other relay rows: accept, connect upstream, pump',
  );
  log('scale: rendezvous server');
  const rendezvous = opts.peers > 0 ? await rendezvousScale(opts) : { note: 'skipped (--peers 0)' };
  return { name: 'scale', options: opts, setup, idle, rendezvous, notes };
}

// ------------------------------------------------------------------ relay

/**
 * A relay's setup figures over the runs: medians, and per run its rate against haproxy's (splice, else no
 * splice) and the JS-pump service's measured in the same run.
 * @param {string} kind @param {Map<string, any[]>} runs
 */
function summarizeSetup(kind, runs) {
  const list = runs.get(kind) ?? [];
  const ok = list.filter((r) => r.perSecond !== undefined);
  const haproxy = runs.get('haproxy-splice') ?? runs.get('haproxy-nosplice') ?? [];
  /** @param {any[]} ref */
  const ratio = (ref) => summarize(list.map((r, i) => (r.perSecond && ref[i]?.perSecond ? r.perSecond / ref[i].perSecond : null)));
  return {
    kind,
    label: RELAY_LABELS[kind],
    perSecond: summarize(ok.map((r) => r.perSecond)),
    relayCpuMsPerSession: summarize(ok.map((r) => r.relayCpuMsPerSession)),
    sessions: ok.reduce((a, r) => a + r.sessions, 0),
    failed: ok.reduce((a, r) => a + r.failed, 0),
    codes: ok.find((r) => r.codes)?.codes,
    vsHaproxy: ratio(haproxy),
    vsServiceJs: ratio(runs.get('service-js') ?? []),
    note: list.find((r) => r.note)?.note,
  };
}

/**
 * Runs `fn` with `kind` started between a fresh load process and a fresh echo sink; a relay that is unavailable
 * or fails comes back as a row with a note.
 * @param {string} kind @param {number} lifetimeMs @param {{ maxconn: number }} relayOpts
 * @param {(relay: import('./lib/relays.mjs').Relay, sessions: (o: { count: number, concurrency: number, seconds: number, keep: boolean }) => Promise<any>) => Promise<object>} fn
 */
async function withRelay(kind, lifetimeMs, relayOpts, fn) {
  const label = RELAY_LABELS[kind];
  const sink = forkChild(LOAD, [], { lifetimeMs });
  const load = forkChild(LOAD, [], { lifetimeMs, execArgv: nodeFlagsFrom('BENCH_LOAD_NODE_FLAGS') });
  try {
    const { port: sinkPort } = await request(sink, 'echo');
    const relay = await startRelay(kind, sinkPort, { lifetimeMs, ...relayOpts });
    if (!relay.available) return { kind, label, note: relay.note };
    try {
      const sessions = (/** @type {{ count: number, concurrency: number, seconds: number, keep: boolean }} */ o) =>
        request(load, 'sessions', { port: relay.port, secret: relay.secret, ...o }, (o.seconds + 30) * 1000);
      return { kind, label, ...(await fn(relay, sessions)) };
    } finally {
      await relay.stop();
    }
  } catch (e) {
    return { kind, label, note: `failed: ${/** @type {Error} */ (e).message.split('\n')[0]}` };
  } finally {
    await Promise.all([stopChild(load), stopChild(sink)]);
  }
}

/** @param {Record<string, number>} codes */
const codesOrNone = (codes) => (Object.keys(codes).length ? codes : undefined);

/** @param {string} kind @param {ScaleOptions} opts */
function setupRate(kind, opts) {
  return withRelay(kind, (opts.budgetSeconds + 60) * 1000, { maxconn: 4096 }, async (relay, sessions) => {
    const c0 = relay.cpuSeconds();
    const r = await sessions({ count: opts.churn, concurrency: opts.concurrency, seconds: opts.budgetSeconds, keep: false });
    await relay.idle();
    const c1 = relay.cpuSeconds();
    const cpu = c0 !== null && c1 !== null && kind !== 'direct' ? c1 - c0 : null;
    return {
      sessions: r.ok,
      failed: r.failed,
      codes: codesOrNone(r.codes),
      seconds: r.seconds,
      perSecond: r.ok / r.seconds,
      relayCpuMsPerSession: cpu !== null && r.ok ? (cpu * 1000) / r.ok : null,
    };
  });
}

/** A snapshot of the relay process and the system. @param {number | undefined} pid */
function snapshot(pid) {
  const m = memInfo();
  return {
    rss: pid ? procRss(pid) : null,
    fds: pid ? procFds(pid) : null,
    memAvailable: m.MemAvailable ?? null,
    slab: m.Slab ?? null,
    tcpMem: tcpSockMem(),
  };
}

/** @param {string} kind @param {ScaleOptions} opts */
function idleSessions(kind, opts) {
  if (2 * opts.sessions + 100 > FD_HARD_LIMIT) {
    const note = `skipped: ${opts.sessions} sessions need ${2 * opts.sessions} relay fds (limit ${FD_HARD_LIMIT})`;
    return Promise.resolve({ kind, label: RELAY_LABELS[kind], note });
  }
  return withRelay(kind, (opts.budgetSeconds * 2 + opts.settleSeconds + 60) * 1000, { maxconn: opts.sessions + 100 }, async (relay, sessions) => {
    await sleep(300);
    const heap0 = relay.stats ? (await relay.stats(true)).heapUsed : null;
    const before = snapshot(relay.pid);
    const r = await sessions({ count: opts.sessions, concurrency: 200, seconds: opts.budgetSeconds, keep: true });
    await sleep(1000);
    const inside = relay.stats ? await relay.stats(true) : null;
    const after = snapshot(relay.pid);
    // Held idle for a while: a Node relay's heap keeps the pages its setup burst grew into (mostly V8's young
    // generation) until V8's memory reducer gives them back, which it did 10-20 s after the burst here. The settled
    // figure is what an idle relay holds; the first is the peak right after the burst. Same wait for every relay.
    await sleep(opts.settleSeconds * 1000);
    const settled = opts.settleSeconds > 0 ? snapshot(relay.pid) : null;
    const n = r.ok;
    const per = (/** @type {number | null} */ a, /** @type {number | null} */ b) => (a !== null && b !== null && n > 0 ? (b - a) / n : null);
    return {
      held: n,
      failed: r.failed,
      codes: codesOrNone(r.codes),
      setupSeconds: r.seconds,
      setupPerSecond: n / r.seconds,
      relayRssBytesPerSession: per(before.rss, after.rss),
      relayRssSettledBytesPerSession: settled ? per(before.rss, settled.rss) : null,
      settleSeconds: opts.settleSeconds,
      // The part of it that is JavaScript objects (after a full GC), the rest being the addon's and the allocator's.
      relayHeapBytesPerSession: per(heap0 ?? null, inside?.heapUsed ?? null),
      relayRssMiB: after.rss !== null ? after.rss / 2 ** 20 : null,
      relayFds: after.fds,
      systemBytesPerSession: per(after.memAvailable, before.memAvailable),
      slabBytesPerSession: per(before.slab, after.slab),
      tcpBufferBytesPerSession: per(before.tcpMem, after.tcpMem),
      pump: inside?.pump ?? null,
    };
  });
}

// ------------------------------------------------------------------ rendezvous

/** @param {ScaleOptions} opts */
export async function rendezvousScale(opts) {
  const lifetimeMs = (opts.budgetSeconds * 3 + 60) * 1000;
  const server = forkChild(RENDEZVOUS, [], { lifetimeMs, execArgv: ['--expose-gc', ...nodeFlagsFrom('BENCH_SERVER_NODE_FLAGS')] });
  // Each swarm process holds at most 9,000 control connections (plus observe and dial sockets).
  const nSwarms = Math.max(1, Math.ceil(opts.peers / 9000));
  const swarms = Array.from({ length: nSwarms }, () => forkChild(SWARM, [], { lifetimeMs }));
  // Pinned, the server's CPU figures vary less from run to run on a shared 2-core machine (no migrations, no
  // sharing a core with the swarm that loads it).
  const pinned = opts.pin === true && os.cpus().length >= 2 && which('taskset') !== null;
  if (pinned) {
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(server.pid)], { stdio: 'ignore' });
    for (const w of swarms) execFileSync('taskset', ['-a', '-p', '-c', '1', String(w.pid)], { stdio: 'ignore' });
  }
  try {
    // No NAT probe listeners: a registration then costs what it costs without the probe (four more connections per
    // peer with it).
    const { port } = await request(server, 'start', { host: '127.0.0.1', secret: SECRET, options: { natProbe: false, keepaliveMs: KEEPALIVE_MS } });
    const addr = `127.0.0.1:${port}`;
    const pid = /** @type {number} */ (server.pid);
    await sleep(300);
    const s0 = await request(server, 'stats', { gc: true });
    const rss0 = procRss(pid);
    const share = Math.ceil(opts.peers / nSwarms);
    const wait = (opts.budgetSeconds + 60) * 1000;
    const register = { server: addr, secret: SECRET, count: share, concurrency: 100, seconds: opts.budgetSeconds };
    const regs = await Promise.all(swarms.map((w, i) => request(w, 'register', { ...register, prefix: `p${i}-` }, wait)));
    await sleep(1000);
    const s1 = await request(server, 'stats', { gc: true });
    const rss1 = procRss(pid);
    const fds1 = procFds(pid);
    const registered = regs.reduce((a, r) => a + r.ok, 0);
    const regSeconds = Math.max(...regs.map((r) => r.seconds));
    /** @type {Record<string, number>} */
    const regCodes = {};
    for (const r of regs) for (const [k, v] of Object.entries(r.codes)) regCodes[k] = (regCodes[k] ?? 0) + v;

    const dialBatch = (/** @type {number} */ count) => request(swarms[0], 'dial', { pairs: 500, count, concurrency: 20, seconds: opts.budgetSeconds }, wait);
    // Untimed first: the server's first few hundred coordinations run its code cold (interpreted, then compiled on
    // V8's background threads, which process.cpuUsage counts), about half the CPU figure of a 300-dial sample.
    log(`scale: ${WARMUP_DIALS} coordinations to warm up, then ${opts.dials} timed`);
    const warm = await dialBatch(WARMUP_DIALS);
    // At least one keepalive interval: every peer pings once in it, so the rate is the steady background's even
    // where registrations came in a burst (then so do their pings).
    const batchMs = (warm.seconds * 1000 * opts.dials) / Math.max(1, warm.ok);
    const idle = await idleCpu(server, Math.max(KEEPALIVE_MS, batchMs));
    // BENCH_PROFILE=file.cpuprofile: the server's V8 CPU profile of the timed batch (it costs CPU: figures are higher).
    const profile = process.env.BENCH_PROFILE;
    if (profile) await request(server, 'profile');
    log(`scale: idle ${fmt(idle.seconds, 1)} s measured; timed batch of ${opts.dials} coordinations`);
    const c0 = await request(server, 'stats');
    const dials = await dialBatch(opts.dials);
    const c1 = await request(server, 'stats');
    if (profile) await request(server, 'profile', { file: path.resolve(profile) });
    const cpuMs = (c1.cpu.user + c1.cpu.system - c0.cpu.user - c0.cpu.system) / 1000;
    const sysMs = (c1.cpu.system - c0.cpu.system) / 1000;
    // The window also holds the registered peers' background cost (keepalives, timers) at the idle rate.
    const idleMsInBatch = idle.cpuMsPerSecond * dials.seconds;
    await Promise.all(swarms.map((w) => request(w, 'close', {}, 60_000).catch(() => null)));
    return {
      pinned,
      peersAsked: opts.peers,
      registered,
      registerFailed: regs.reduce((a, r) => a + r.failed, 0),
      registerCodes: codesOrNone(regCodes),
      registerSeconds: regSeconds,
      registrationsPerSecond: registered / regSeconds,
      serverStats: s1.stats,
      serverRssMiB: rss1 !== null ? rss1 / 2 ** 20 : null,
      serverRssBytesPerPeer: rss0 !== null && rss1 !== null && registered ? (rss1 - rss0) / registered : null,
      serverHeapBytesPerPeer: registered ? (s1.heapUsed - s0.heapUsed) / registered : null,
      serverFds: fds1,
      coordinations: dials.ok,
      coordinationsFailed: dials.failed,
      coordinationCodes: codesOrNone(dials.codes),
      coordinationsPerSecond: dials.ok / dials.seconds,
      serverCpuMsPerCoordination: dials.ok ? cpuMs / dials.ok : null,
      serverSystemCpuMsPerCoordination: dials.ok ? sysMs / dials.ok : null,
      serverCpuMsPerCoordinationNet: dials.ok ? (cpuMs - idleMsInBatch) / dials.ok : null,
      serverIdleCpuMsPerSecond: idle.cpuMsPerSecond,
      serverIdleWindowSeconds: idle.seconds,
      serverIdleCpuUsPerPeerSecond: registered ? (idle.cpuMsPerSecond * 1000) / registered : null,
    };
  } catch (e) {
    return { note: `failed: ${/** @type {Error} */ (e).message.split('\n')[0]}` };
  } finally {
    await Promise.all([...swarms.map((w) => stopChild(w)), stopChild(server)]);
  }
}

/**
 * The server's CPU rate (ms per s) with its peers registered and no dial in flight, over `ms`: keepalive pings, idle
 * timers, what any registered peer costs.
 * @param {import('node:child_process').ChildProcess} server @param {number} ms
 */
async function idleCpu(server, ms) {
  const a = await request(server, 'stats');
  const t0 = performance.now();
  await sleep(ms);
  const b = await request(server, 'stats');
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, cpuMsPerSecond: (b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system) / 1000 / seconds };
}

// ------------------------------------------------------------------ report

/** @param {number | null | undefined} b */
const kb = (b) => (b === null || b === undefined ? '—' : fmt(b / 1024, 1));
/** Machine-wide differences: a negative one means other activity outweighed the sessions. @param {number | null | undefined} b */
const kbSystem = (b) => (b !== null && b !== undefined && b < 0 ? 'noise' : kb(b));

/**
 * @param {Awaited<ReturnType<typeof run>>} section
 * @param {(header: string[], rows: string[][]) => string} [table] text (terminal) or Markdown table renderer
 */
export function report(section, table = textTable) {
  const o = section.options;
  const out = [
    `Relay session setup per second (${o.concurrency} at a time, up to ${o.churn}, median (min–max) of ${o.runs} runs): ` +
      'open, one byte there and back, close; relay service: both sides join with a token pair. Ratios are per run.',
  ];
  out.push(
    table(
      ['relay', 'sessions/s', '× haproxy', '× service JS', 'relay CPU ms/session', 'ok', 'failed', 'note'],
      section.setup.map((/** @type {any} */ r) => [
        r.label,
        fmtSummary(r.perSecond, 0),
        fmtSummary(r.vsHaproxy),
        fmtSummary(r.vsServiceJs),
        fmtSummary(r.relayCpuMsPerSession, 3),
        String(r.sessions ?? ''),
        r.failed ? `${r.failed} ${JSON.stringify(r.codes ?? {})}` : '0',
        r.note ?? '',
      ]),
    ),
  );
  out.push('', `Idle relay sessions held at once (asked ${o.sessions}); per session, KiB; relay RSS 1 s after the setup burst and after ${o.settleSeconds ?? 0} s idle`);
  out.push(
    table(
      ['relay', 'held', 'relay RSS at 1 s', 'relay RSS settled', 'of it JS heap', 'system', 'slab', 'TCP buf', 'relay fds (sock/pipe)', 'relay RSS MiB', 'note'],
      section.idle.map((/** @type {any} */ r) => [
        r.label,
        r.held !== undefined ? String(r.held) : '—',
        kb(r.relayRssBytesPerSession),
        kb(r.relayRssSettledBytesPerSession),
        kb(r.relayHeapBytesPerSession),
        kbSystem(r.systemBytesPerSession),
        kbSystem(r.slabBytesPerSession),
        kbSystem(r.tcpBufferBytesPerSession),
        r.relayFds ? `${r.relayFds.total} (${r.relayFds.socket}/${r.relayFds.pipe})` : '—',
        fmt(r.relayRssMiB, 1),
        r.note ??
          [
            r.failed ? `${r.failed} failed ${JSON.stringify(r.codes ?? {})}` : '',
            r.pump ? `pump: ${r.pump.pipesInUse} pipes lent, ${r.pump.pipesIdle} idle, ${r.pump.sessions} sessions` : '',
          ]
            .filter(Boolean)
            .join('; '),
      ]),
    ),
  );
  const z = /** @type {any} */ (section.rendezvous);
  out.push('', `Rendezvous server${z.pinned ? ' (pinned: server on CPU 0, swarms on CPU 1)' : ''}`);
  if (z.note) out.push(`  ${z.note}`);
  else {
    out.push(
      table(
        ['figure', 'value'],
        [
          ['peers registered', `${z.registered} of ${z.peersAsked}${z.registerFailed ? ` (${z.registerFailed} failed ${JSON.stringify(z.registerCodes)})` : ''}`],
          ['registrations/s', fmt(z.registrationsPerSecond, 0)],
          ['server RSS', `${fmt(z.serverRssMiB, 1)} MiB`],
          ['server RSS per peer', `${kb(z.serverRssBytesPerPeer)} KiB`],
          ['server JS heap per peer', `${kb(z.serverHeapBytesPerPeer)} KiB`],
          ['server fds', z.serverFds ? String(z.serverFds.total) : '—'],
          ['coordinations/s (Peer.dial, 20 at a time)', `${fmt(z.coordinationsPerSecond, 0)} (${z.coordinations} ok, ${z.coordinationsFailed} failed)`],
          ['server CPU per coordination, raw (whole batch window)', `${fmt(z.serverCpuMsPerCoordination, 3)} ms (system ${fmt(z.serverSystemCpuMsPerCoordination, 3)})`],
          ['server CPU per coordination, attributable (raw − idle baseline)', `${fmt(z.serverCpuMsPerCoordinationNet, 3)} ms`],
          ['server idle CPU, peers registered, no dials', `${fmt(z.serverIdleCpuMsPerSecond, 2)} ms/s over ${fmt(z.serverIdleWindowSeconds, 1)} s`],
          ['server idle CPU per registered peer', `${fmt(z.serverIdleCpuUsPerPeerSecond, 3)} µs/s`],
        ],
      ),
    );
  }
  for (const n of section.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

if (isMain(import.meta.url)) {
  import('./lib/cli.mjs').then((m) => m.main(['--only', 'scale', ...process.argv.slice(2)]));
}
