// @ts-check
/**
 * The relays compared by the benchmarks, each started as a process of its own in front of an upstream endpoint
 * on 127.0.0.1, behind one interface: `startRelay(kind, upstreamPort)` → { port, pid, cpuSeconds(), stop() }.
 *
 * Kinds: `direct` (no relay: the port is the upstream's own, the reference), `c-splice` (bench/splice-relay.c, the
 * limit of a relay: one thread, epoll, splice, nothing else), `native`, `native-copy`, `js`, `pipe` (Node relay
 * process, see relay-proc.mjs), `socat`, `haproxy-splice`, `haproxy-nosplice`. A kind whose program or module is
 * missing comes back with `available: false` and a note. `service-native` and `service-js` are tcp-punch's relay
 * service itself (RelayService + listenRelay): no upstream, clients come in pairs holding tokens (see `secret`).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BENCH_DIR, forkChild, nodeFlagsFrom, procChildren, request, sleep, spawnTool, stopChild, tempDir, treeCpuSeconds, waitUntil, which } from './common.mjs';

/** Open files hard limit of one process on this machine: not raisable, even as root. */
export const FD_HARD_LIMIT = 20_000;

/** @type {Record<string, string>} */
export const RELAY_LABELS = {
  direct: 'direct, no relay (reference)',
  'c-splice': 'minimal C splice relay (the limit of a relay)',
  native: 'tcp-punch relay, native pump',
  'native-copy': 'tcp-punch relay, native pump, no splice',
  js: 'tcp-punch relay, JS pump',
  pipe: 'Node relay, stream pipe()',
  socat: 'socat (fork per connection)',
  'service-native': 'tcp-punch relay service, native pump',
  'service-js': 'tcp-punch relay service, JS pump',
  'haproxy-splice': 'haproxy tcp mode, splice',
  'haproxy-nosplice': 'haproxy tcp mode, no splice',
};

/**
 * @typedef {object} Relay
 * @property {string} kind
 * @property {boolean} available
 * @property {string} [note]
 * @property {number} port where clients connect
 * @property {number} [pid] the relay process (absent for `direct`)
 * @property {() => number | null} cpuSeconds user+system CPU of the relay's process tree so far (/proc)
 * @property {(gc?: boolean) => Promise<any>} [stats] Node relays: counters and process.cpuUsage() from inside
 * @property {() => Promise<void>} idle resolves once the relay holds no per-connection child process
 * @property {() => Promise<void>} stop
 * @property {string} [secret] relay service kinds: clients join with tokens signed with this secret (no upstream)
 */

/**
 * @param {string} kind @param {number} upstreamPort
 * @param {{ lifetimeMs: number, maxconn?: number }} opts
 * @returns {Promise<Relay>}
 */
export async function startRelay(kind, upstreamPort, opts) {
  if (kind === 'direct') return { kind, available: true, port: upstreamPort, cpuSeconds: () => 0, idle: async () => {}, stop: async () => {} };
  if (kind === 'c-splice') return startSpliceRelay(upstreamPort, opts);
  if (kind === 'socat') return startSocat(upstreamPort, opts);
  if (kind === 'haproxy-splice' || kind === 'haproxy-nosplice') return startHaproxy(kind === 'haproxy-splice', upstreamPort, opts);
  if (kind in RELAY_LABELS) return startNodeRelay(kind, upstreamPort, opts);
  throw new Error(`unknown relay kind ${kind}`);
}

/** @param {string} kind @param {string} note @returns {Relay} */
function missing(kind, note) {
  return { kind, available: false, note, port: 0, cpuSeconds: () => null, idle: async () => {}, stop: async () => {} };
}

/**
 * A Node relay process (relay-proc.mjs): the benchmark relay in front of `upstreamPort` with one of the pumps, or
 * (`service-*`) tcp-punch's relay service, whose clients join in pairs with tokens signed with `secret`.
 * @param {string} kind native, native-copy, js, pipe, service-native or service-js @param {number} upstreamPort
 * @param {{ lifetimeMs: number }} opts
 * @returns {Promise<Relay>}
 */
async function startNodeRelay(kind, upstreamPort, opts) {
  const execArgv = ['--expose-gc', ...nodeFlagsFrom('BENCH_RELAY_NODE_FLAGS')];
  const child = forkChild(path.join(BENCH_DIR, 'lib', 'relay-proc.mjs'), [], { lifetimeMs: opts.lifetimeMs, execArgv });
  const pid = /** @type {number} */ (child.pid);
  const service = kind.startsWith('service-');
  const secret = service ? randomBytes(32).toString('base64url') : undefined;
  const r = service
    ? await request(child, 'listen-service', { pump: kind.slice('service-'.length), secret, limits: SERVICE_LIMITS })
    : await request(child, 'listen', { pump: kind, upstream: { host: '127.0.0.1', port: upstreamPort } });
  if (!r.available) {
    await stopChild(child);
    return missing(kind, r.note);
  }
  return {
    kind,
    available: true,
    note: r.note,
    port: r.port,
    pid,
    secret,
    cpuSeconds: () => treeCpuSeconds(pid),
    stats: (gc = false) => request(child, 'stats', { gc }),
    idle: async () => {
      const end = Date.now() + 3000;
      while (Date.now() < end && (await request(child, 'stats')).open > 0) await sleep(10);
    },
    stop: () => stopChild(child),
  };
}

/** Limits of the relay service under benchmark: every client is 127.0.0.1, and up to 9,900 sessions at once. */
export const SERVICE_LIMITS = { maxSessions: 9900, maxSessionsPerIp: 20_000, maxSessionsPerPeer: 1000 };

/** A port that was free a moment ago on 127.0.0.1 (for programs that cannot report the port they got). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen({ host: '127.0.0.1', port: 0 }, () => resolve(undefined)));
  const port = /** @type {net.AddressInfo} */ (srv.address()).port;
  await new Promise((resolve) => srv.close(() => resolve(undefined)));
  return port;
}

/**
 * True once something listens on 127.0.0.1:port (read from /proc/net/tcp, so no probe connection reaches the
 * upstream: iperf3's server would take a probe for a client).
 * @param {number} port
 */
export function isListening(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  try {
    return fs
      .readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .some((l) => {
        const f = l.trim().split(/\s+/);
        return f[3] === '0A' && (f[1] === `0100007F:${hex}` || f[1] === `00000000:${hex}`);
      });
  } catch {
    return false;
  }
}

/**
 * Waits until a spawned program listens on 127.0.0.1:port; stops it and throws with its alerts if it does not.
 * @param {ReturnType<typeof spawnTool>} child @param {number} port @param {string} what
 */
export async function awaitListening(child, port, what) {
  const ok = await waitUntil(() => isListening(port) || child.exitCode !== null, 5000, 10);
  if (!ok || child.exitCode !== null) {
    await stopChild(child);
    const text = `${child.out.stderr}\n${child.out.stdout}`.split('\n').filter((l) => l.trim());
    const alerts = text.filter((l) => /ALERT|error/i.test(l));
    throw new Error(`${what} did not start listening on ${port}: ${(alerts.length ? alerts : text).join(' / ')}`);
  }
}

/**
 * A relay that is a program of its own, listening on `port` once started.
 * @param {string} kind @param {string} bin @param {string[]} args @param {number} port @param {string} note
 * @param {{ lifetimeMs: number, cwd?: string }} opts
 * @returns {Promise<Relay>}
 */
async function spawnRelay(kind, bin, args, port, note, opts) {
  const child = spawnTool(bin, args, opts);
  await awaitListening(child, port, kind);
  const pid = /** @type {number} */ (child.pid);
  return {
    kind,
    available: true,
    note,
    port,
    pid,
    cpuSeconds: () => treeCpuSeconds(pid),
    // socat forks a child per connection, which exits with it; once the parent has reaped them all, their CPU
    // is in its cutime/cstime.
    idle: () => waitUntil(() => procChildren(pid).length === 0, 3000, 10).then(() => undefined),
    stop: () => stopChild(child),
  };
}

/** The limit relay's pipes are as large as the native pump's by default (pipeSize, native/pump.cc). */
const C_PIPE_BYTES = 1 << 20;

/** The compiled bench/splice-relay.c, built once per benchmark process (null without a C compiler). */
let spliceRelayBin = /** @type {string | null | undefined} */ (undefined);

/** @param {number} upstreamPort @param {{ lifetimeMs: number }} opts @returns {Promise<Relay>} */
async function startSpliceRelay(upstreamPort, opts) {
  if (spliceRelayBin === undefined) {
    const cc = which('cc') ?? which('gcc');
    spliceRelayBin = cc ? path.join(tempDir('c-splice'), 'splice-relay') : null;
    if (cc && spliceRelayBin) execFileSync(cc, ['-O2', '-o', spliceRelayBin, path.join(BENCH_DIR, 'splice-relay.c')]);
  }
  if (!spliceRelayBin) return missing('c-splice', 'no C compiler (cc) to build bench/splice-relay.c');
  const port = await freePort();
  const note = `one thread, epoll edge-triggered, two ${C_PIPE_BYTES >> 10} KiB pipes per connection`;
  return spawnRelay('c-splice', spliceRelayBin, [String(port), String(upstreamPort), String(C_PIPE_BYTES)], port, note, opts);
}

/** @param {number} upstreamPort @param {{ lifetimeMs: number }} opts @returns {Promise<Relay>} */
async function startSocat(upstreamPort, opts) {
  const bin = which('socat');
  if (!bin) return missing('socat', 'socat is not installed (apt-get install socat)');
  const port = await freePort();
  const args = [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=4096`, `TCP:127.0.0.1:${upstreamPort},nodelay`];
  return spawnRelay('socat', bin, args, port, 'one forked process per connection; CPU includes the children', opts);
}

/**
 * @param {boolean} splice @param {number} upstreamPort @param {{ lifetimeMs: number, maxconn?: number }} opts
 * @returns {Promise<Relay>}
 */
async function startHaproxy(splice, upstreamPort, opts) {
  const kind = splice ? 'haproxy-splice' : 'haproxy-nosplice';
  const bin = which('haproxy');
  if (!bin) return missing(kind, 'haproxy is not installed (apt-get install haproxy)');
  const port = await freePort();
  const dir = tempDir('haproxy');
  const cfg = path.join(dir, `${kind}.cfg`);
  const maxconn = opts.maxconn ?? 1000;
  // haproxy sizes its fd needs as 2 × maxconn + 2 × maxpipes (default maxconn / 4) and refuses to start above the
  // hard limit (20,000 here): with many sessions, cap the pipes as tcp-punch's own pool does (64).
  const maxpipes = 2 * maxconn + maxconn / 2 + 200 > FD_HARD_LIMIT ? 64 : undefined;
  fs.writeFileSync(cfg, haproxyConfig({ splice, port, upstreamPort, maxconn, maxpipes }));
  const note = `nbthread 1, ${splice ? 'option splice-request + splice-response' : 'global nosplice'}${maxpipes ? `, maxpipes ${maxpipes}` : ''}`;
  return spawnRelay(kind, bin, ['-db', '-f', cfg], port, note, { lifetimeMs: opts.lifetimeMs, cwd: dir });
}

/**
 * The haproxy configuration the benchmarks use (written to a temp dir; shown in docs/BENCHMARKS.md).
 * @param {{ splice: boolean, port: number, upstreamPort: number, maxconn: number, maxpipes?: number }} o
 */
export function haproxyConfig(o) {
  return `# tcp-punch benchmark: haproxy ${o.splice ? 'with' : 'without'} splice
global
    nbthread 1
    maxconn ${o.maxconn}
${o.splice ? '' : '    nosplice\n'}${o.maxpipes ? `    maxpipes ${o.maxpipes}\n` : ''}
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
${o.splice ? '    option splice-request\n    option splice-response\n' : ''}
frontend fe
    bind 127.0.0.1:${o.port}
    maxconn ${o.maxconn}
    default_backend be

backend be
    server upstream 127.0.0.1:${o.upstreamPort} maxconn ${o.maxconn}
`;
}
