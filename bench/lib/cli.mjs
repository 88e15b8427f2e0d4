// @ts-check
/**
 * The command line shared by bench/run.mjs and each bench/<question>.mjs run on its own.
 *
 *   node bench/run.mjs [--only throughput,connect,scale,micro] [--runs N] [--seconds S] [--full] ...
 *
 * Runs the chosen sections one after the other, prints each one's table, writes the run to
 * bench/results/<date>-<commit>.json, merges it into bench/results/latest.json and redraws latest.svg.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DIST, RESULTS_DIR, killChildren, log, machineInfo } from './common.mjs';

/** Section name → module (each exports run(opts), report(section), options(flags, full)). */
export const SECTIONS = {
  throughput: '../throughput.mjs',
  connect: '../connect-time.mjs',
  scale: '../scale.mjs',
  micro: '../micro.mjs',
  // Not in the default run: it needs redis-server.
  cluster: '../cluster.mjs',
};
export const DEFAULT_SECTIONS = ['throughput', 'connect', 'scale', 'micro'];

const HELP = `Usage: node bench/run.mjs [options]

  --only LIST        sections to run, comma-separated: ${Object.keys(SECTIONS).join(', ')} (default: all)
  --full             the long variant of every section (5 runs × 5 s throughput, 9,000 relay sessions,
                     10,000 peers, the NAT lab when root): about 20–30 minutes
  --runs N           throughput, scale setup: runs per figure ({throughput.runs})
  --seconds S        throughput: seconds per run ({throughput.seconds})
  --streams LIST     throughput: parallel stream counts ({throughput.streams})
  --directions LIST  throughput: fwd (dialing side sends), rev ({throughput.directions})
  --paths LIST       throughput: only these paths (node-plain, node-punched, direct, c-splice, native, js, pipe, socat,
                     haproxy-splice, haproxy-nosplice; native-copy only when named)
  --pin              throughput: pin the two Node-socket ends to CPUs 0 and 1; scale: the rendezvous server to CPU 0,
                     its swarms to CPU 1 (off by default)
  --iterations N     connect: dials per figure ({connect.iterations})
  --lab              connect: also the NAT lab (root; default with --full)
  --rtts LIST        connect: lab RTTs in ms ({connect.rtts})
  --loss PCT         connect: lab packet loss per path in % ({connect.lossPct}; each of the two links drops half)
  --strategies LIST  connect: Peer.dial strategies ({connect.strategies})
  --budget S         scale: wall-clock cap of each load phase in seconds ({scale.budgetSeconds})
  --churn N          scale: sessions opened and closed per setup-rate figure ({scale.churn})
  --sessions N       scale: idle relay sessions held at once ({scale.sessions}; 0 skips)
  --settle S         scale: seconds the idle sessions are held before the settled RSS figure ({scale.settleSeconds})
  --peers N          scale: peers registered on one rendezvous server ({scale.peers}; 0 skips)
  --dials N          scale: coordinations timed on the rendezvous server ({scale.dials})
  --relays LIST      scale: relays to load ({scale.relays})
  --max-time S       micro: seconds per micro-benchmark ({micro.maxTime})
                     cluster (only when named: needs redis-server): --peers over its three nodes ({cluster.peers}),
                     --iterations dials per latency figure ({cluster.iterations}; 4× per rate figure)
  --no-save          print only; do not write bench/results/
  -h, --help         this text
`;

/**
 * HELP with each `{section.option}` filled in from that section's DEFAULTS and FULL, where the defaults are decided.
 * @returns {Promise<string>}
 */
async function help() {
  /** @type {Record<string, any>} */
  const mods = {};
  for (const [, name] of HELP.matchAll(/\{(\w+)\./g)) mods[name] ??= await import(/** @type {Record<string, string>} */ (SECTIONS)[name]);
  const show = (/** @type {unknown} */ v) => (Array.isArray(v) ? v.join(',') : String(v));
  return HELP.replace(/\{(\w+)\.(\w+)\}/g, (_, section, key) => {
    const [d, f] = [show(mods[section].DEFAULTS[key]), show(mods[section].FULL[key])];
    return d === f ? `default ${d}` : `default ${d}; --full ${f}`;
  });
}

/**
 * The parseArgs options, read from HELP so that a flag is declared once: `--name VALUE` takes a string, a lone
 * `--name` is a switch; `--only` may repeat.
 * @type {import('node:util').ParseArgsConfig['options']}
 */
const OPTIONS = Object.fromEntries(
  [...HELP.matchAll(/^ {2}(?:-(\w), )?--([\w-]+)( [A-Z])?/gm)].map(([, short, name, value]) => [
    name,
    { type: value ? 'string' : 'boolean', ...(short ? { short } : {}), ...(name === 'only' ? { multiple: true } : {}) },
  ]),
);

/**
 * @param {string[]} argv
 */
export async function main(argv) {
  /** @type {any} */
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: false, options: OPTIONS });
  } catch (e) {
    log(`${/** @type {Error} */ (e).message}\n\n${await help()}`);
    process.exitCode = 2;
    return;
  }
  const flags = parsed.values;
  if (flags.help) {
    process.stdout.write(await help());
    return;
  }
  if (!fs.existsSync(path.join(DIST, 'index.js'))) {
    log('dist/ is not built: run `npm run build:ts` (and `npm run build:native`) first');
    process.exitCode = 2;
    return;
  }
  const only = flags.only ? flags.only.flatMap((/** @type {string} */ s) => s.split(',')).filter(Boolean) : DEFAULT_SECTIONS;
  for (const s of only) {
    if (!(s in SECTIONS)) {
      log(`unknown section "${s}"; choose from ${Object.keys(SECTIONS).join(', ')}`);
      process.exitCode = 2;
      return;
    }
  }

  const machine = machineInfo();
  log(`tcp-punch benchmarks on ${machine.cpuModel} × ${machine.cores}, Linux ${machine.kernel}, Node ${machine.node}`);
  /** @type {Record<string, any>} */
  const sections = {};
  const started = Date.now();
  for (const name of only) {
    const mod = await import(/** @type {Record<string, string>} */ (SECTIONS)[name]);
    const opts = mod.options(flags, flags.full);
    log(`\n== ${name} ${JSON.stringify(opts)}`);
    const t0 = Date.now();
    const loadBefore = os.loadavg().map((x) => +x.toFixed(2));
    if (loadBefore[0] > 0.5) {
      log(`warning: load average ${loadBefore[0]} before ${name}: something else is using the CPU, figures will be noisy`);
    }
    try {
      const section = await mod.run(opts);
      section.measuredAt = new Date().toISOString();
      section.commit = machine.git.commit;
      // latest.json mixes sections of several runs, and the runs do not always land on the same hardware.
      section.machine = { cpuModel: machine.cpuModel, cores: machine.cores, kernel: machine.kernel };
      section.wallSeconds = (Date.now() - t0) / 1000;
      // 1/5/15-minute load averages: the benchmark's own load shows up too, but a high figure before it started
      // means another program competed for the 2 cores.
      section.loadavg = { before: loadBefore, after: os.loadavg().map((x) => +x.toFixed(2)) };
      sections[name] = section;
      process.stdout.write(`\n${mod.report(section)}\n`);
    } catch (e) {
      const err = /** @type {Error} */ (e);
      log(`${name} failed: ${err.stack ?? err}`);
      sections[name] = { name, error: String(err.message ?? err), measuredAt: new Date().toISOString() };
      process.exitCode = 1;
    }
  }
  killChildren();
  const result = { schema: 1, machine, argv, wallSeconds: (Date.now() - started) / 1000, sections };
  if (!flags['no-save']) {
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    const merged = mergeLatest(result);
    const { renderChart } = await import('../chart.mjs');
    fs.writeFileSync(path.join(RESULTS_DIR, 'latest.svg'), renderChart(merged));
    log('\nresults merged into bench/results/latest.json (chart: latest.svg)');
  }
  log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/**
 * latest.json holds the newest measurement of every section: this run's sections replace the older ones, the
 * others are kept (each section carries its own measuredAt and commit).
 * @param {{ sections: Record<string, any>, machine: any }} result
 */
function mergeLatest(result) {
  const file = path.join(RESULTS_DIR, 'latest.json');
  /** @type {any} */
  let prev = null;
  try {
    prev = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {}
  const sections = { ...(prev?.sections ?? {}) };
  for (const [k, v] of Object.entries(result.sections)) if (!v.error || !sections[k]) sections[k] = v;
  const merged = { ...result, sections };
  const text = `${JSON.stringify(merged, null, 2)}\n`;
  fs.writeFileSync(file, text);
  return merged;
}

/**
 * Parses a comma-separated list of numbers.
 * @param {string | undefined} s @param {number[]} dflt
 */
export function numList(s, dflt) {
  if (s === undefined) return dflt;
  const v = s.split(',').map((x) => Number(x.trim()));
  if (v.some((x) => !Number.isFinite(x) || x < 0)) throw new Error(`bad number list "${s}"`);
  return v;
}

/**
 * A number flag in min..max (min: a positive number by default).
 * @param {string | undefined} s @param {number} dflt @param {number} [max] @param {number} [min]
 */
export function num(s, dflt, max = Infinity, min = Number.MIN_VALUE) {
  if (s === undefined) return dflt;
  const v = Number(s);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`bad number "${s}" (${min > 0 ? 'above 0' : min}..${max})`);
  return v;
}

/** @param {string | undefined} s @param {string[] | undefined} dflt */
export function strList(s, dflt) {
  return s === undefined ? dflt : s.split(',').map((x) => x.trim()).filter(Boolean);
}
