// @ts-check
/**
 * Shared helpers of the benchmarks: statistics, machine info, child processes with deadlines, CPU time from
 * /proc, tables, result files. No dependency beyond Node itself.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const ROOT = path.dirname(BENCH_DIR);
/** The built package; TCP_PUNCH_BENCH_DIST points the benchmarks at another build of it. */
export const DIST = process.env.TCP_PUNCH_BENCH_DIST ? path.resolve(process.env.TCP_PUNCH_BENCH_DIST) : path.join(ROOT, 'dist');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');

/** Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every Linux we run on). */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

// ------------------------------------------------------------------ statistics

/**
 * @typedef {{ median: number, min: number, max: number, n: number, runs: number[] }} Summary
 */

/**
 * Median, min and max of the finite values (NaN / null are dropped).
 * @param {readonly (number | null | undefined)[]} values
 * @returns {Summary | null}
 */
export function summarize(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return null;
  const s = /** @type {number[]} */ ([...v]).sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], n: s.length, runs: /** @type {number[]} */ (v) };
}

/**
 * The q-quantile (0..1) by nearest rank.
 * @param {readonly number[]} values @param {number} q
 */
export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** @param {number | null | undefined} x @param {number} [digits] */
export function fmt(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return x.toFixed(digits);
}

/**
 * "median (min–max)".
 * @param {Summary | null | undefined} s @param {number} [digits]
 */
export function fmtSummary(s, digits = 2) {
  if (!s) return '—';
  if (s.n === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

// ------------------------------------------------------------------ tables

/**
 * Renders rows as an aligned text table (first column left-aligned, the rest right-aligned).
 * @param {string[]} header @param {string[][]} rows
 */
export function table(header, rows) {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i] ?? '').length)));
  const line = (/** @type {string[]} */ r) =>
    r.map((c, i) => (i === 0 ? String(c ?? '').padEnd(widths[i]) : String(c ?? '').padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/**
 * Renders rows as a Markdown table (numbers right-aligned, names and notes left-aligned).
 * @param {string[]} header @param {string[][]} rows
 */
export function markdownTable(header, rows) {
  const esc = (/** @type {string} */ c) => String(c ?? '').replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${header.map((h, i) => (i === 0 || /^(note|path|target|case|figure|relay|scope|group)$/.test(h) ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

// ------------------------------------------------------------------ machine and /proc

/** A file's text, or null when it cannot be read. @param {string} file */
function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** A command's output (stdout and stderr, trimmed; also when it fails), or null. @param {string} cmd @param {string[]} args */
function tryExec(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }).trim();
  } catch (e) {
    const err = /** @type {{ stdout?: string, stderr?: string }} */ (e);
    return `${err.stdout ?? ''}${err.stderr ?? ''}`.trim() || null;
  }
}

/**
 * The absolute path of an executable on PATH (plus the sbin directories), or null.
 * @param {string} name
 */
export function which(name) {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/bin']);
  for (const d of dirs.filter(Boolean)) {
    try {
      fs.accessSync(path.join(d, name), fs.constants.X_OK);
      return path.join(d, name);
    } catch {}
  }
  return null;
}

/** Facts about this machine and checkout, stored with every result. */
export function machineInfo() {
  const cpus = os.cpus();
  const commit = tryExec('git', ['-C', ROOT, 'rev-parse', 'HEAD']);
  const dirty = tryExec('git', ['-C', ROOT, 'status', '--porcelain']);
  const first = (/** @type {string} */ tool, /** @type {string[]} */ args) => (which(tool) ? (tryExec(tool, args)?.split('\n')[0] ?? null) : null);
  /** @type {Record<string, string>} */
  const limits = {};
  for (const [k, f] of [
    ['pipeUserPagesSoft', 'fs/pipe-user-pages-soft'],
    ['pipeMaxSize', 'fs/pipe-max-size'],
    ['ipLocalPortRange', 'net/ipv4/ip_local_port_range'],
    ['tcpRmem', 'net/ipv4/tcp_rmem'],
    ['tcpWmem', 'net/ipv4/tcp_wmem'],
  ]) {
    const v = readText(`/proc/sys/${f}`);
    if (v !== null) limits[k] = v.trim().replace(/\s+/g, ' ');
  }
  const nofile = tryExec('sh', ['-c', 'echo "$(ulimit -Sn) $(ulimit -Hn)"']);
  if (nofile) limits.nofileSoftHard = nofile;
  return {
    date: new Date().toISOString(),
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    kernel: os.release(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    distro: readText('/etc/os-release')?.match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? null,
    node: process.version,
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    uid: process.getuid?.() ?? null,
    git: {
      commit: commit && /^[0-9a-f]{40}$/.test(commit) ? commit : null,
      dirty: dirty === null ? null : dirty.length > 0,
    },
    tools: {
      iperf3: first('iperf3', ['--version']),
      socat: which('socat') ? (tryExec('socat', ['-V'])?.match(/socat version (\S+)/)?.[1] ?? 'present') : null,
      haproxy: first('haproxy', ['-v']),
    },
    limits,
  };
}

/**
 * CPU seconds (user + system, all threads) a live process has used, plus those of its children it has already
 * waited for (cutime + cstime). null if the process is gone.
 * @param {number} pid
 */
export function procCpuSeconds(pid) {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) may contain spaces: split after its closing parenthesis.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime = field 14, stime 15, cutime 16, cstime 17.
  const [utime, stime, cutime, cstime] = [f[11], f[12], f[13], f[14]].map(Number);
  return { self: (utime + stime) / CLK_TCK, children: (cutime + cstime) / CLK_TCK };
}

/**
 * The live children of a process (all its threads' children).
 * @param {number} pid @returns {number[]}
 */
export function procChildren(pid) {
  let tids;
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tids.flatMap((tid) => (readText(`/proc/${pid}/task/${tid}/children`)?.trim().split(/\s+/).filter(Boolean) ?? []).map(Number));
}

/**
 * CPU seconds of a process tree: the process, its reaped children, and every live descendant.
 * @param {number} pid @returns {number | null}
 */
export function treeCpuSeconds(pid) {
  const own = procCpuSeconds(pid);
  if (!own) return null;
  return procChildren(pid).reduce((total, c) => total + (treeCpuSeconds(c) ?? 0), own.self + own.children);
}

/** Resident set size in bytes of a process (VmRSS), or null. @param {number} pid */
export function procRss(pid) {
  const m = readText(`/proc/${pid}/status`)?.match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : null;
}

/** Counts a process's open fds by kind (socket, pipe, other). @param {number} pid */
export function procFds(pid) {
  const out = { total: 0, socket: 0, pipe: 0, other: 0 };
  let names;
  try {
    names = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  for (const n of names) {
    out.total++;
    let target = '';
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${n}`);
    } catch {}
    if (target.startsWith('socket:')) out.socket++;
    else if (target.startsWith('pipe:')) out.pipe++;
    else out.other++;
  }
  return out;
}

/** System-wide memory figures in bytes from /proc/meminfo. */
export function memInfo() {
  /** @type {Record<string, number>} */
  const out = {};
  for (const m of (readText('/proc/meminfo') ?? '').matchAll(/^(\w+):\s+(\d+) kB/gm)) out[m[1]] = Number(m[2]) * 1024;
  return out;
}

/** Pages of socket buffer memory TCP holds system-wide (/proc/net/sockstat "TCP: ... mem N"), in bytes. */
export function tcpSockMem() {
  const m = readText('/proc/net/sockstat')?.match(/^TCP:.*\bmem (\d+)/m);
  return m ? Number(m[1]) * 4096 : null;
}

// ------------------------------------------------------------------ child processes

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();

/** Kills every child this module started (only those, by pid). */
export function killChildren() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
}

process.once('exit', killChildren);
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.once(sig, () => {
    killChildren();
    process.exit(130);
  });
}

/**
 * More node flags for a benchmark process, from the environment variable `name` (space-separated), e.g.
 * BENCH_SERVER_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" or "--perf-basic-prof" for perf(1).
 * @param {string} name @returns {string[]}
 */
export function nodeFlagsFrom(name) {
  return (process.env[name] ?? '').split(' ').filter(Boolean);
}

/**
 * Forks a Node script with an IPC channel and a hard lifetime, after which it is killed.
 * @param {string} script @param {string[]} args
 * @param {{ lifetimeMs: number, execArgv?: string[], env?: NodeJS.ProcessEnv }} opts
 */
export function forkChild(script, args, opts) {
  const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: opts.execArgv ?? [], env: opts.env ?? process.env });
  children.add(child);
  killAfter(child, opts.lifetimeMs).unref();
  return child;
}

/**
 * Spawns a program with a hard lifetime; its output is collected (capped) for error messages and parsing.
 * @param {string} cmd @param {string[]} args
 * @param {{ lifetimeMs: number, cwd?: string }} opts
 */
export function spawnTool(cmd, args, opts) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd });
  const out = { stdout: '', stderr: '' };
  for (const k of /** @type {const} */ (['stdout', 'stderr'])) {
    child[k].setEncoding('utf8').on('data', (d) => {
      if (out[k].length < 4 << 20) out[k] += d;
    });
  }
  children.add(child);
  killAfter(child, opts.lifetimeMs).unref();
  return Object.assign(child, { out });
}

/** SIGKILLs `child` after `ms` unless it exits first. @param {import('node:child_process').ChildProcess} child @param {number} ms */
function killAfter(child, ms) {
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  child.once('exit', () => {
    clearTimeout(timer);
    children.delete(child);
  });
  return timer;
}

/**
 * Resolves with the exit code of a child (null on a signal), or kills it after timeoutMs and resolves then.
 * @param {import('node:child_process').ChildProcess} child @param {number} timeoutMs
 * @returns {Promise<number | null>}
 */
export function waitExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  killAfter(child, timeoutMs);
  return new Promise((resolve) => child.once('exit', resolve));
}

/**
 * Stops a child: SIGTERM, then SIGKILL after graceMs.
 * @param {import('node:child_process').ChildProcess} child @param {number} [graceMs]
 */
export async function stopChild(child, graceMs = 2000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await waitExit(child, graceMs);
}

/**
 * Sends a request to a child (see child.mjs) and waits for its reply of type `${type}:ok`; rejects on the child's
 * `error` reply, its exit, or after timeoutMs.
 * @param {import('node:child_process').ChildProcess} child @param {string} type @param {object} [body]
 * @param {number} [timeoutMs]
 * @returns {Promise<any>}
 */
export function request(child, type, body = {}, timeoutMs = 15_000) {
  const reply = new Promise((resolve, reject) => {
    const settle = (/** @type {Error | null} */ err, /** @type {any} */ value) => {
      clearTimeout(timer);
      child.off('message', onMessage).off('exit', onExit);
      if (err) reject(err);
      else resolve(value);
    };
    const onMessage = (/** @type {any} */ m) => {
      if (m?.type === 'error') settle(Object.assign(new Error(`child ${child.pid}: ${m.message}`), { code: m.code }), null);
      else if (m?.type === `${type}:ok`) settle(null, m);
    };
    const onExit = (/** @type {number | null} */ code, /** @type {string | null} */ sig) =>
      settle(new Error(`child ${child.pid} exited (${code ?? sig}) while waiting for ${type}:ok`), null);
    const timer = setTimeout(() => settle(new Error(`timed out after ${timeoutMs} ms waiting for ${type}:ok from child ${child.pid}`), null), timeoutMs);
    child.on('message', onMessage).once('exit', onExit);
  });
  child.send({ type, ...body });
  return reply;
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `test` every `everyMs` until it returns true or `timeoutMs` passes; resolves to the last result.
 * @param {() => boolean} test @param {number} timeoutMs @param {number} [everyMs]
 */
export async function waitUntil(test, timeoutMs, everyMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (test()) return true;
    if (Date.now() >= end) return false;
    await sleep(everyMs);
  }
}

/**
 * Imports a module of the built package (relative to dist/; `npm run build:ts` makes it).
 * @param {string} rel e.g. 'relay/pump.js'
 */
export async function importDist(rel) {
  const file = path.join(DIST, rel);
  if (!fs.existsSync(file)) throw new Error(`${path.relative(ROOT, file)} is missing: run npm run build:ts first`);
  return import(new URL(`file://${file}`).href);
}

// ------------------------------------------------------------------ files

/** @type {Set<string>} */
const tempDirs = new Set();
process.once('exit', () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/**
 * A temporary directory under the system tmp dir, removed at exit.
 * @param {string} prefix
 */
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tcp-punch-bench-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

/** @param {string} msg */
export function log(msg) {
  process.stderr.write(`${msg}\n`);
}

/**
 * True when the module at `url` is the script node was started with.
 * @param {string} url
 */
export function isMain(url) {
  return process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(url);
}
