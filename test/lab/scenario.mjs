#!/usr/bin/env node
// Runs one NAT-lab scenario by hand and prints what happened. Needs root. See docs/LAB.md.
//
// By default the dial is the real library: the rendezvous server on the lab's server host, one Peer per peer
// host (test/lab/server-child.mjs, peer-child.mjs, driven by matrix-driver.js; they run dist/, so build first:
// `npx tsc -p tsconfig.build.json`), a dials b with Peer.dial, and both move data each way with SHA-256 checks.
// `--raw` runs the Python probe instead (probe.py punch: listen, learn the mapping from the server, connect() to
// each other at an agreed moment, retry): the lab without the library.
//
//   node test/lab/scenario.mjs --a cone --b symmetric
//   node test/lab/scenario.mjs --a cone-rst --b cone-rst --ttl auto --rounds 5 --both-ways
//   node test/lab/scenario.mjs --a cone-rst --b cone-rst --delay 50 --loss 1 --raw --ttl auto
//   node test/lab/scenario.mjs --a cone --same-nat --hairpin
//   node test/lab/scenario.mjs --a cgnat --cgn symmetric --b public --json
//   node test/lab/scenario.mjs --a cone --b cone --keep        # leave it up, poke around, Ctrl-C tears down
//   node test/lab/scenario.mjs --cleanup                       # remove every lab namespace left behind
import { parseArgs } from 'node:util';
import { BEHAVIOURS, cleanupStaleLabs, createLab, labPrerequisites } from './topology.js';
import { ep, rawPunch, startObserver } from './probes.js';
import { LibraryPair } from './matrix-driver.js';

const USAGE = `usage: node test/lab/scenario.mjs --a BEHAVIOUR [--b BEHAVIOUR] [options]
behaviours: ${BEHAVIOURS.join(', ')}
  --same-nat            both peers behind one NAT (a's behaviour)    --hairpin   that NAT hairpins
  --icmp port|admin     ICMP answer of cone-icmp                     --cgn cone|symmetric  carrier NAT of cgnat
  --home BEHAVIOUR      home NAT behind a cgnat (default cone)       --ipv6      also IPv6, punch over IPv6
  --delay MS --jitter MS --loss PCT   on both access links (delay = added round trip per link)
  --a-delay/--b-delay/--a-jitter/--b-jitter/--a-loss/--b-loss         per link
  --ttl N|auto          low-TTL first SYN (auto: the hop count to the internet router, per side)
  --ttl-side a|b|both   library: which peers use --ttl (default both)
  --timeout S           dial deadline in seconds (library default 15, raw default 8)
  --rounds N            repeat the dial N times                      --seed N    delay/loss PRNG seed
  --json                one JSON line per round                      --keep      keep the lab up until Ctrl-C
  --cleanup             remove every lab namespace (and its processes), then exit
library (default):
  --strategy S          Peer.dial strategy (default: the library's)  --bytes N   bytes each way (default 1048576)
  --both-ways           also dial b → a in every round               --retry-delay MS  Peer punch.retryDelayMs
raw probe (--raw):
  --target public|private   dial the peer's public mapping (default) or its LAN address
  --skew MS             b starts this much later than a`;

const { values: o } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    'same-nat': { type: 'boolean' },
    hairpin: { type: 'boolean' },
    icmp: { type: 'string' },
    cgn: { type: 'string' },
    home: { type: 'string' },
    ipv6: { type: 'boolean' },
    delay: { type: 'string' },
    jitter: { type: 'string' },
    loss: { type: 'string' },
    'a-delay': { type: 'string' },
    'b-delay': { type: 'string' },
    'a-jitter': { type: 'string' },
    'b-jitter': { type: 'string' },
    'a-loss': { type: 'string' },
    'b-loss': { type: 'string' },
    target: { type: 'string' },
    skew: { type: 'string' },
    ttl: { type: 'string' },
    timeout: { type: 'string' },
    rounds: { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean' },
    keep: { type: 'boolean' },
    cleanup: { type: 'boolean' },
    raw: { type: 'boolean' },
    library: { type: 'boolean' },
    strategy: { type: 'string' },
    bytes: { type: 'string' },
    'both-ways': { type: 'boolean' },
    'ttl-side': { type: 'string' },
    'retry-delay': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (o.help) {
  console.log(USAGE);
  process.exit(0);
}
if (o.cleanup) {
  const removed = cleanupStaleLabs({ all: true });
  console.log(removed.length ? `removed: ${removed.join(' ')}` : 'no lab namespaces found');
  process.exit(0);
}
if (!o.a) {
  console.error(USAGE);
  process.exit(2);
}
const pre = labPrerequisites({ delay: true, hairpin: !!o.hairpin });
if (!pre.ok) {
  console.error(`missing: ${pre.missing.join(', ')}`);
  process.exit(2);
}

const num = (/** @type {string | undefined} */ s) => (s === undefined ? undefined : Number(s));
/** @param {'a'|'b'} who @param {string} nat */
function peerSpec(who, nat) {
  /** @type {import('./topology.js').PeerSpec} */
  const p = { nat: /** @type {any} */ (nat) };
  if (o.icmp) p.icmp = /** @type {any} */ (o.icmp);
  if (o.cgn) p.cgn = /** @type {any} */ (o.cgn);
  if (o.home) p.home = /** @type {any} */ (o.home);
  const d = num(o[`${who}-delay`] ?? o.delay);
  const j = num(o[`${who}-jitter`] ?? o.jitter);
  const l = num(o[`${who}-loss`] ?? o.loss);
  if (d !== undefined) p.delayMs = d;
  if (j !== undefined) p.jitterMs = j;
  if (l !== undefined) p.lossPct = l;
  return p;
}

const specA = peerSpec('a', o.a);
/** @type {import('./topology.js').LabSpec} */
const spec = { a: specA, ipv6: !!o.ipv6 };
if (o['same-nat']) {
  spec.sameNat = true;
  spec.hairpin = !!o.hairpin;
  spec.b = { ...peerSpec('b', o.a), nat: specA.nat };
} else spec.b = peerSpec('b', o.b ?? 'cone');
if (o.seed) spec.seed = Number(o.seed);

/**
 * One dial between the two peers with the raw Python probe (`--raw`).
 * @param {import('./topology.js').Lab} lab @param {number} round
 */
async function rawDial(lab, round) {
  const ttl = o.ttl === undefined ? undefined : o.ttl === 'auto' ? 'auto' : Number(o.ttl);
  const base = 42000 + round * 10;
  return rawPunch(lab, {
    lportA: base,
    lportB: base + 1,
    ipv6: !!o.ipv6,
    target: o.target === 'private' ? 'private' : 'public',
    skewMs: num(o.skew),
    ttl,
    timeoutS: num(o.timeout) ?? 8,
  });
}

const raw = !!o.raw && !o.library;
const t0 = Date.now();
const lab = await createLab(spec);
const built = Date.now() - t0;
let failed = 0;
/** @type {LibraryPair | undefined} */
let pair;
try {
  const describe = (/** @type {'a'|'b'} */ who) => {
    const p = lab.peers[who];
    const shape = lab.delays.find((d) => d.link === who);
    const s = shape ? ` [delay ${shape.delayMs ?? 0} ms ±${(shape.jitterMs ?? 0) / 2}, loss ${shape.lossPct ?? 0}%]` : '';
    return `${who}=${p.behaviour}${p.spec.icmp ? `(${p.spec.icmp})` : ''} host ${p.ip}${p.ip6 ? ` ${p.ip6}` : ''} public ${p.publicIp}${s}`;
  };
  if (!o.json) {
    console.log(`lab ${lab.id} built in ${built} ms${lab.sameNat ? ` (same NAT, hairpin ${lab.hairpin ? 'on' : 'off'})` : ''}`);
    console.log(`  ${describe('a')}\n  ${describe('b')}\n  server ${lab.server.ip}${lab.server.ip6 ? ` ${lab.server.ip6}` : ''}`);
  }
  const rounds = num(o.rounds) ?? 1;
  if (raw) {
    await startObserver(lab, { ipv6: !!o.ipv6 });
    for (let i = 0; i < rounds; i++) failed += printRaw(i, await rawDial(lab, i), await lab.leaks());
  } else {
    /** @type {{ a?: { ttl?: number, retryDelayMs?: number }, b?: { ttl?: number, retryDelayMs?: number } }} */
    const punch = {};
    const sides = o['ttl-side'] === 'a' ? ['a'] : o['ttl-side'] === 'b' ? ['b'] : ['a', 'b'];
    for (const who of /** @type {const} */ (['a', 'b'])) {
      /** @type {{ ttl?: number, retryDelayMs?: number }} */
      const t = {};
      if (o.ttl !== undefined && sides.includes(who)) t.ttl = o.ttl === 'auto' ? lab.peers[who].ttlToInternet : Number(o.ttl);
      if (o['retry-delay'] !== undefined) t.retryDelayMs = Number(o['retry-delay']);
      if (Object.keys(t).length) punch[who] = t;
    }
    const t1 = Date.now();
    pair = await LibraryPair.start(lab, { punch, ipv6: !!o.ipv6 });
    if (!o.json) {
      const ttl = Object.entries(punch).map(([w, t]) => `${w} ${JSON.stringify(t)}`).join(', ');
      console.log(`  library: server ${pair.serverAddress}, peers registered in ${Date.now() - t1} ms${ttl ? `, punch: ${ttl}` : ''}`);
    }
    const timeoutMs = Math.round((num(o.timeout) ?? 15) * 1000);
    const bytes = num(o.bytes) ?? 1 << 20;
    /** @type {import('./matrix-driver.js').DialRecord[]} */
    const all = [];
    for (let i = 0; i < rounds; i++) {
      for (const from of /** @type {const} */ (o['both-ways'] ? ['a', 'b'] : ['a'])) {
        const r = await pair.dial(from, { strategy: o.strategy, timeoutMs, bytes });
        all.push(r);
        if (!r.ok) failed++;
        printLibrary(i, r, punch);
      }
    }
    if (all.length > 1 && !o.json) printSummary(all);
  }
  if (o.keep) {
    console.log(`\nlab kept up; namespaces:`);
    for (const [k, n] of Object.entries(lab.ns)) console.log(`  ${k.padEnd(6)} ip netns exec ${n} bash`);
    if (raw) console.log(`observer on ${ep(lab.server.ip, 7001)} and :7002 (answers "ip port" of what it sees).`);
    else console.log(`rendezvous server on ${pair?.serverAddress}, peers 'a' and 'b' registered.`);
    console.log('Ctrl-C tears everything down.');
    await new Promise((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  }
} finally {
  await pair?.close().catch(() => undefined);
  await lab.destroy();
}
process.exit(failed ? 1 : 0);

/** @param {any} s */
function scenarioOf(s) {
  return { a: spec.a, b: spec.b, sameNat: !!spec.sameNat, hairpin: !!spec.hairpin, ipv6: !!spec.ipv6, ...s };
}

/** @param {number} i @param {import('./matrix-driver.js').DialRecord} r @param {object} punch */
function printLibrary(i, r, punch) {
  if (o.json) {
    console.log(JSON.stringify({ scenario: scenarioOf({ punch, strategy: o.strategy ?? null }), round: i, ...r }));
    return;
  }
  const head = `round ${i}: ${r.from}→${r.to} path ${r.path}`;
  if (r.path === 'failed') console.log(`${head} after ${r.attempt} attempt(s), ${r.connectMs} ms: ${r.error}`);
  else {
    const plan = [r.mode, r.route].filter(Boolean).join(', ');
    const data = r.integrity
      ? r.integrity.forward && r.integrity.backward
        ? `${r.integrity.bytes} bytes each way, SHA-256 ok`
        : `DATA MISMATCH (received ${r.integrity.received.join('/')}, first difference at ${r.integrity.firstDiff.join('/')})`
      : 'no data exchange';
    const how = r.path === 'relay' ? `after ${r.punchAttempts} punch attempt(s)` : `attempt ${r.attempt}${plan ? `, ${plan}` : ''}`;
    console.log(`${head} (${how}) via ${r.remote?.host}:${r.remote?.port}`);
    console.log(`  connected in ${r.connectMs} ms, first byte after ${r.firstByteMs} ms; ${data}${r.error ? `; error ${r.error}` : ''}`);
    if (r.timings && r.path === 'direct') {
      const t = r.timings;
      console.log(`  timings: observe ${t.observeMs?.toFixed(1)} ms, sync delay ${t.delayMs} ms, punch ${t.punchMs?.toFixed(1)} ms, direct auth ${t.handshakeMs?.toFixed(1)} ms`);
    }
  }
  const fmt = (/** @type {import('./matrix-driver.js').AttemptBrief[]} */ evs) =>
    evs.map((e) => `${e.mode === 'relay' ? 'relay' : `#${e.attempt}`} ${e.outcome}${e.code && e.outcome !== 'ok' ? ` ${e.code}` : ''} ${e.ms} ms`).join(', ') || '—';
  console.log(`  attempts: ${r.from} (initiator) ${fmt(r.attempts)}; ${r.to} (responder) ${fmt(r.responderAttempts)}`);
  if (r.leaks) console.log(`  internet router dropped ${r.leaks} packet(s) with private source/destination (a NAT leaked)`);
  if (r.orphans) console.log(`  ${r.to} got ${r.orphans} connection(s) for an earlier dial that had failed on the dialer's side`);
}

/** @param {import('./matrix-driver.js').DialRecord[]} all */
function printSummary(all) {
  const ms = all.map((r) => r.connectMs ?? 0).sort((x, y) => x - y);
  const q = (/** @type {number} */ p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
  const paths = /** @type {Record<string, number>} */ ({});
  for (const r of all) {
    const key = r.ok || r.path === 'failed' ? r.path : `${r.path} but broken`;
    paths[key] = (paths[key] ?? 0) + 1;
  }
  const att = /** @type {Record<string, number>} */ ({});
  for (const r of all) att[r.punchAttempts] = (att[r.punchAttempts] ?? 0) + 1;
  console.log(
    `summary: ${all.filter((r) => r.ok).length}/${all.length} ok; paths ${Object.entries(paths).map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
      `punch attempts ${Object.entries(att).map(([k, v]) => `${k}:${v}`).join(' ')}; connect ms p50 ${q(0.5)} p90 ${q(0.9)} max ${ms.at(-1)}`,
  );
}

/** @param {number} i @param {any} r @param {number} leaks */
function printRaw(i, r, leaks) {
  const ok = r.a.ok && r.b.ok;
  const record = {
    scenario: scenarioOf({ skewMs: num(o.skew) ?? 0, ttl: o.ttl ?? null, raw: true }),
    round: i,
    path: ok ? 'direct' : 'failed',
    observed: r.observed,
    a: { ok: r.a.ok, attempts: r.a.attempts, ms: r.a.ms, via: r.a.via ?? null, remote: r.a.remote ?? null, errors: r.a.errors },
    b: { ok: r.b.ok, attempts: r.b.attempts, ms: r.b.ms, via: r.b.via ?? null, remote: r.b.remote ?? null, errors: r.b.errors },
    leaks,
  };
  if (o.json) console.log(JSON.stringify(record));
  else {
    console.log(`round ${i}: path ${record.path}   mappings a ${r.observed.a}  b ${r.observed.b}`);
    for (const who of /** @type {const} */ (['a', 'b'])) {
      const x = r[who];
      const errs = x.errors.length ? `  errors ${x.errors.join(',')}` : '';
      console.log(`  ${who}: ${x.ok ? `connected (${x.via}) to ${x.remote}` : 'no connection'} after ${x.attempts} attempt(s), ${x.ms} ms${errs}`);
    }
    if (leaks) console.log(`  internet router dropped ${leaks} packet(s) with private source/destination (a NAT leaked)`);
  }
  return ok ? 0 : 1;
}
