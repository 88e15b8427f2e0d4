// The connectivity matrix: the real library (rendezvous server + two Peers, from dist/) through real Linux NATs
// built by the lab. For each pair of NAT behaviours: dial, move 1 MiB each way with SHA-256 checks, and assert the
// path — direct for every pair without a symmetric side (RST and ICMP routers included), the relay where a side is
// symmetric. Every dial is recorded (path, attempts, time to connect, time to first byte) in
// test/lab/.results/matrix.json and printed as a table at the end (docs/LAB.md, "The library's matrix").
//
// Root only. One topology per pair (beforeAll), torn down in afterAll (and by the lab's exit handlers when the
// run is interrupted); pairs run one after another.
//
//   npx vitest run test/lab/matrix.test.ts
//   MATRIX_ONLY=cone-rst MATRIX_ROUNDS=3 npx vitest run test/lab/matrix.test.ts     # a subset, 3 dials each way
//   (MATRIX_ONLY: comma-separated substrings of "<group>: <pair>", groups "no delay" and "50 ms, 1 %")
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LibraryPair, type DialRecord } from './matrix-driver.js';
import { labSkipNote } from '../helpers/skip-note.js';
import { createLab, LAB_DIR, labPrerequisites, type Lab, type LabSpec, type PeerSpec } from './topology.js';

// ----------------------------------------------------------------------------------------------------------------
// Pairs with a symmetric side are dialled with 'direct-first' and must connect through the relay (`path: 'relay'`)
// after punching failed. With `false` (a library without the relay fallback) they are dialled with 'direct' instead
// and must FAIL to punch.
const RELAY_FALLBACK = true;
// ----------------------------------------------------------------------------------------------------------------

/** Deadline of a dial expected to punch (the library's default). */
const DIRECT_TIMEOUT_MS = 15_000;
/** Deadline of a dial expected to fail to punch (RELAY_FALLBACK off): one full 5 s attempt and part of a second. */
const FAIL_TIMEOUT_MS = 6_000;
/** Deadline of a dial expected to fall back to the relay (RELAY_FALLBACK on): the library's default, so the time
 * to the relay is what an application sees (direct-first punches for 60 % of it, then relays). */
const RELAY_TIMEOUT_MS = 15_000;
/** Bytes each way: no delay / with the 50 ms + 1 % loss links (there 1 MiB would take seconds per dial). */
const BYTES = 1 << 20;
const BYTES_SHAPED = 256 << 10;

const ROUNDS = Math.max(1, Number(process.env.MATRIX_ROUNDS ?? 1) || 1);
const ONLY = process.env.MATRIX_ONLY;
const RESULTS = path.join(LAB_DIR, '.results', 'matrix.json');

const pre = labPrerequisites({ delay: true, hairpin: true });
if (!pre.ok) console.warn(`NAT matrix skipped, missing: ${pre.missing.join(', ')}`);

type Side = 'a' | 'b';
interface Scenario {
  /** row name, e.g. "cone × cone-rst" */
  name: string;
  spec: LabSpec;
  expect: 'direct' | 'relay';
  /** who dials: a→b, and b→a where the roles could matter */
  dials: Side[];
  /** low-TTL first SYN (Peer `punch.ttl` = the lab's hop count to the internet router) on these sides */
  ttl?: Side[];
  /** expected plan of a direct connection */
  route?: 'public' | 'private';
  mode?: 'sync' | 'reverse';
  /**
   * relay rows: the server skips punching at once (ERR_PUNCH_UNLIKELY), since a side's NAT probe found a
   * symmetric mapping and the other side is not directly reachable
   */
  skipped?: boolean;
  note?: string;
}

const both: Side[] = ['a', 'b'];
const icmpAdmin: PeerSpec = { nat: 'cone-icmp', icmp: 'admin' };
const symCgn: PeerSpec = { nat: 'cgnat', cgn: 'symmetric' };

const DEFAULT: Scenario[] = [
  { name: 'cone × cone', spec: { a: 'cone', b: 'cone' }, expect: 'direct', dials: both, mode: 'sync' },
  { name: 'cone × cone-rst', spec: { a: 'cone', b: 'cone-rst' }, expect: 'direct', dials: both },
  { name: 'cone × cone-icmp', spec: { a: 'cone', b: 'cone-icmp' }, expect: 'direct', dials: both },
  {
    name: 'cone-rst × cone-rst',
    spec: { a: 'cone-rst', b: 'cone-rst' },
    expect: 'direct',
    dials: both,
    ttl: both,
    note: 'low-TTL first SYN on both sides (without it: retries phase-lock, see docs/LAB.md)',
  },
  { name: 'cone-rst × cone-icmp', spec: { a: 'cone-rst', b: 'cone-icmp' }, expect: 'direct', dials: both },
  { name: 'cone-icmp × cone-icmp (admin)', spec: { a: 'cone-icmp', b: icmpAdmin }, expect: 'direct', dials: both },
  { name: 'public × cone', spec: { a: 'public', b: 'cone' }, expect: 'direct', dials: both, mode: 'reverse' },
  { name: 'public × cone-rst', spec: { a: 'public', b: 'cone-rst' }, expect: 'direct', dials: both, mode: 'reverse' },
  { name: 'public × cone-icmp', spec: { a: 'public', b: 'cone-icmp' }, expect: 'direct', dials: both, mode: 'reverse' },
  { name: 'public × public', spec: { a: 'public', b: 'public' }, expect: 'direct', dials: both, mode: 'reverse' },
  { name: 'cgnat × cone', spec: { a: 'cgnat', b: 'cone' }, expect: 'direct', dials: both, mode: 'sync' },
  { name: 'cgnat × cone-rst', spec: { a: 'cgnat', b: 'cone-rst' }, expect: 'direct', dials: both },
  { name: 'cgnat × public', spec: { a: 'cgnat', b: 'public' }, expect: 'direct', dials: both, mode: 'reverse' },
  { name: 'cgnat × cgnat', spec: { a: 'cgnat', b: 'cgnat' }, expect: 'direct', dials: both },
  { name: 'same NAT, hairpin', spec: { a: 'cone', sameNat: true, hairpin: true }, expect: 'direct', dials: both, route: 'private' },
  { name: 'same NAT, no hairpin', spec: { a: 'cone', sameNat: true, hairpin: false }, expect: 'direct', dials: both, route: 'private' },
  { name: 'same symmetric NAT', spec: { a: 'symmetric', sameNat: true }, expect: 'direct', dials: both, route: 'private' },
  { name: 'cone × symmetric', spec: { a: 'cone', b: 'symmetric' }, expect: 'relay', dials: ['a'], skipped: true },
  { name: 'cone-rst × symmetric', spec: { a: 'cone-rst', b: 'symmetric' }, expect: 'relay', dials: ['a'], skipped: true },
  { name: 'cone-icmp × symmetric', spec: { a: 'cone-icmp', b: 'symmetric' }, expect: 'relay', dials: ['a'], skipped: true },
  // a is reachable, but its probe finds the stateful firewall filtering by port: b's SYN from a new port cannot get
  // in, so the dial is skipped at once (before the filtering probe, reversal was tried and failed after ~9 s).
  { name: 'public × symmetric', spec: { a: 'public', b: 'symmetric' }, expect: 'relay', dials: ['a'], skipped: true },
  { name: 'symmetric × symmetric', spec: { a: 'symmetric', b: 'symmetric' }, expect: 'relay', dials: ['a'], skipped: true },
  { name: 'cgnat (symmetric CGN) × cone', spec: { a: symCgn, b: 'cone' }, expect: 'relay', dials: ['a'], skipped: true },
  {
    name: 'open × symmetric',
    spec: { a: 'open', b: 'symmetric' },
    expect: 'direct',
    dials: ['a'],
    // a is reachable: connection reversal, whose listener accepts b's address from any port (b's symmetric NAT
    // picks a new port for it).
    note: 'connection reversal through a symmetric NAT',
  },
];

const shaped = (nat: PeerSpec | PeerSpec['nat']): PeerSpec => ({
  ...(typeof nat === 'string' ? { nat } : nat),
  delayMs: 50,
  lossPct: 1,
});
const SHAPED: Scenario[] = [
  { name: 'cone × cone', spec: { a: shaped('cone'), b: shaped('cone') }, expect: 'direct', dials: both },
  { name: 'cone × cone-rst', spec: { a: shaped('cone'), b: shaped('cone-rst') }, expect: 'direct', dials: both },
  { name: 'cone-rst × cone-rst', spec: { a: shaped('cone-rst'), b: shaped('cone-rst') }, expect: 'direct', dials: both },
  {
    name: 'cone-rst × cone-rst, low TTL',
    spec: { a: shaped('cone-rst'), b: shaped('cone-rst') },
    expect: 'direct',
    dials: both,
    ttl: both,
  },
  {
    name: 'cone-rst × cone-rst, 10 ms / 90 ms links',
    spec: { a: { nat: 'cone-rst', delayMs: 10, lossPct: 1 }, b: { nat: 'cone-rst', delayMs: 90, lossPct: 1 } },
    expect: 'direct',
    dials: both,
    note: 'no low TTL: with it this pair never connects (docs/LAB.md)',
  },
  { name: 'cone-icmp × cone-icmp', spec: { a: shaped('cone-icmp'), b: shaped('cone-icmp') }, expect: 'direct', dials: both },
  { name: 'cgnat × cone', spec: { a: shaped('cgnat'), b: shaped('cone') }, expect: 'direct', dials: both },
  { name: 'public × cone-rst', spec: { a: shaped('public'), b: shaped('cone-rst') }, expect: 'direct', dials: both, mode: 'reverse' },
  { name: 'cone × symmetric', spec: { a: shaped('cone'), b: shaped('symmetric') }, expect: 'relay', dials: ['a'], skipped: true },
];

// ------------------------------------------------------------------------------------------------ the results

interface ResultRow {
  group: string;
  scenario: string;
  spec: LabSpec;
  expect: Scenario['expect'];
  ttl: Side[];
  note?: string;
  from: Side;
  round: number;
  ok: boolean;
  path: string;
  attempt: number;
  punchAttempts: number;
  mode: string | null;
  route: string | null;
  connectMs: number | null;
  firstByteMs: number | null;
  error: string | null;
  attempts: DialRecord['attempts'];
  responderAttempts: DialRecord['responderAttempts'];
  leaks: number;
  orphans: number;
}
const rows: ResultRow[] = [];
const setup: { group: string; scenario: string; ms: number; error?: string }[] = [];
const started = Date.now();

afterAll(() => {
  if (rows.length === 0 && setup.length === 0) return;
  const out = {
    version: 1,
    date: new Date().toISOString(),
    node: process.version,
    relayFallback: RELAY_FALLBACK,
    rounds: ROUNDS,
    filter: ONLY ?? null,
    totalMs: Date.now() - started,
    setup,
    dials: rows,
  };
  mkdirSync(path.dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, JSON.stringify(out, null, 2) + '\n');
  console.log(`\n${table(rows)}\nmatrix: ${rows.length} dials in ${((Date.now() - started) / 1000).toFixed(1)} s, written to ${RESULTS}`);
});

/** One line per scenario and direction: path, attempts, ms to connect and to the first byte (median over rounds). */
function table(all: ResultRow[]): string {
  const lines = ['| group | A × B | dial | expected | path | attempt(s) | connect ms | first byte ms |', '|---|---|---|---|---|---|---|---|'];
  const keys = [...new Set(all.map((r) => `${r.group}\u0000${r.scenario}\u0000${r.from}`))];
  for (const k of keys) {
    const [group, scenario, from] = k.split('\u0000') as [string, string, Side];
    const rs = all.filter((r) => r.group === group && r.scenario === scenario && r.from === from);
    const paths = [...new Set(rs.map((r) => (r.ok ? r.path : r.path === 'failed' ? `failed (${r.error?.split(' ')[0]})` : `${r.path}, broken`)))];
    const att = rs.map((r) => (r.path === 'relay' ? `${r.punchAttempts}→relay` : String(r.attempt))).join(', ');
    lines.push(
      `| ${group} | ${scenario} | ${from}→${from === 'a' ? 'b' : 'a'} | ${rs[0]!.expect} | ${paths.join(' / ')} | ${att} | ${median(rs.map((r) => r.connectMs))} | ${median(rs.map((r) => r.firstByteMs))} |`,
    );
  }
  return lines.join('\n');
}

function median(xs: (number | null)[]): string {
  const v = xs.filter((x): x is number => x !== null).sort((p, q) => p - q);
  if (v.length === 0) return '—';
  const m = v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  return v.length > 1 ? `${Math.round(m)} (${Math.round(v[0]!)}–${Math.round(v.at(-1)!)})` : String(Math.round(m));
}

// ------------------------------------------------------------------------------------------------ the tests

/** Builds the topology and starts server + peers once for the enclosing describe; always tears down. */
function usePair(group: string, sc: Scenario): () => LibraryPair {
  let lab: Lab | undefined;
  let pair: LibraryPair | undefined;
  beforeAll(async () => {
    const t0 = Date.now();
    try {
      lab = await createLab(sc.spec);
      const punch: { a?: { ttl: number }; b?: { ttl: number } } = {};
      for (const s of sc.ttl ?? []) punch[s] = { ttl: lab.peers[s].ttlToInternet };
      pair = await LibraryPair.start(lab, { punch });
      setup.push({ group, scenario: sc.name, ms: Date.now() - t0 });
    } catch (e) {
      setup.push({ group, scenario: sc.name, ms: Date.now() - t0, error: String(e) });
      throw e;
    }
  });
  afterAll(async () => {
    try {
      await pair?.close();
    } finally {
      await lab?.destroy();
    }
  });
  return () => {
    if (!pair) throw new Error('lab not built');
    return pair;
  };
}

function scenarioTests(group: string, list: Scenario[], bytes: number): void {
  for (const sc of list) {
    if (ONLY && !ONLY.split(',').some((part) => `${group}: ${sc.name}`.includes(part))) continue;
    describe(sc.name, () => {
      const pair = usePair(group, sc);
      for (const from of sc.dials) {
        const to = from === 'a' ? 'b' : 'a';
        const relayed = sc.expect === 'relay';
        const title = relayed && !RELAY_FALLBACK ? `${from} dials ${to}: punching fails (relay needed)` : `${from} dials ${to}: ${sc.expect}`;
        it(title, async () => {
          for (let round = 0; round < ROUNDS; round++) {
            const r = await pair().dial(from, {
              // direct pairs: the library's default strategy (direct-first once the relay lands: it must not fall back)
              strategy: relayed ? (RELAY_FALLBACK ? 'direct-first' : 'direct') : undefined,
              timeoutMs: relayed ? (RELAY_FALLBACK ? RELAY_TIMEOUT_MS : FAIL_TIMEOUT_MS) : DIRECT_TIMEOUT_MS,
              bytes,
            });
            rows.push({
              group,
              scenario: sc.name,
              spec: sc.spec,
              expect: sc.expect,
              ttl: sc.ttl ?? [],
              ...(sc.note ? { note: sc.note } : {}),
              from,
              round,
              ok: r.ok,
              path: r.path,
              attempt: r.attempt,
              punchAttempts: r.punchAttempts,
              mode: r.mode,
              route: r.route,
              connectMs: r.connectMs,
              firstByteMs: r.firstByteMs,
              error: r.error,
              attempts: r.attempts,
              responderAttempts: r.responderAttempts,
              leaks: r.leaks,
              orphans: r.orphans,
            });
            const why = JSON.stringify(r, null, 1);
            expect(r.leaks, `a NAT let private addresses out: ${why}`).toBe(0);
            expect(r.orphans, `the dialled peer got a connection for an earlier dial that failed: ${why}`).toBe(0);
            if (relayed && !RELAY_FALLBACK) {
              expect(r.path, why).toBe('failed');
              expect(r.error?.split(' ')[0], why).toMatch(/^(ERR_PUNCH_FAILED|ETIMEDOUT)$/);
              expect(r.attempts.filter((e) => e.outcome === 'ok'), why).toEqual([]);
              continue;
            }
            expect(r.error, why).toBeNull();
            expect(r.path, why).toBe(sc.expect);
            expect(r.integrity, why).toMatchObject({ forward: true, backward: true, bytes });
            expect(r.ok, why).toBe(true);
            expect(r.firstByteMs, why).not.toBeNull();
            if (sc.expect === 'relay') {
              // punching was tried first and failed (it cannot work here), then the relay carried the stream
              expect(r.punchAttempts, why).toBeGreaterThan(0);
              expect(r.attempts.filter((e) => e.outcome === 'ok' && e.mode !== 'relay'), why).toEqual([]);
              // ... or was skipped at once where the NAT probes showed it cannot work
              expect(r.attempts.some((e) => e.code === 'ERR_PUNCH_UNLIKELY'), why).toBe(!!sc.skipped);
            }
            if (sc.expect === 'direct') {
              if (sc.route) expect(r.route, why).toBe(sc.route);
              if (sc.mode) expect(r.mode, why).toBe(sc.mode);
            }
          }
        }, 60_000 + ROUNDS * (RELAY_TIMEOUT_MS + 45_000));
      }
    });
  }
}

describe.skipIf(!pre.ok)('NAT matrix: the library through real NATs', labSkipNote(pre.missing), () => {
  scenarioTests('no delay', DEFAULT, BYTES);
});

describe.skipIf(!pre.ok)('NAT matrix: 50 ms per access link (100 ms RTT between the peers), 1 % loss', labSkipNote(pre.missing), () => {
  scenarioTests('50 ms, 1 %', SHAPED, BYTES_SHAPED);
});
