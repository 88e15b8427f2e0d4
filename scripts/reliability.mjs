#!/usr/bin/env node
// The reliability suite in one command: runs test/reliability and test/fuzz (the bounded CI version, or the long
// soak), merges what every test file recorded under test/reliability/.results/ into summary.json (and
// summary-results.json / summary-soak.json), and renders the tables of docs/RELIABILITY.md from it: a bounded run
// into the section between the "results" markers, a soak into the one between the "soak" markers.
//
//   node scripts/reliability.mjs            bounded run (~2 min on 2 cores), then render
//   node scripts/reliability.mjs --soak     long soak (TCP_PUNCH_SOAK=1: longer attacks, more dials and runs)
//   node scripts/reliability.mjs --render   only re-merge the recorded results (e.g. of single test files) and re-render
//                                           (with --soak: the soak's)
//   node scripts/reliability.mjs --print    print the tables instead of writing the document
//
// Exit code: vitest's (the document is rendered either way, so a failing run is reported too).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(ROOT, 'test/reliability/.results');
const SUMMARY = join(RESULTS, 'summary.json');
const DOC = join(ROOT, 'docs/RELIABILITY.md');
/** The skip reporter's last line (test/helpers/skip-reporter.ts), printed again as this script's last line. */
const SKIPS = join(RESULTS, 'skipped.txt');
/** Each kind of run renders into its own section of the document (markers `<!-- results:begin ...` / `<!-- soak:begin ...`). */
const markers = (kind) => [`<!-- ${kind}:begin (rendered by scripts/reliability.mjs from test/reliability/.results/summary-${kind}.json) -->`, `<!-- ${kind}:end -->`];

const args = new Set(process.argv.slice(2));
const soak = args.has('--soak');
let exitCode = 0;

if (!args.has('--render')) {
  // Start clean, but keep everything of the other kind (results and summaries).
  mkdirSync(RESULTS, { recursive: true });
  for (const f of readdirSync(RESULTS)) if (isKind(f, soak)) rmSync(join(RESULTS, f), { force: true });
  const t0 = Date.now();
  const vitest = join(ROOT, 'node_modules/vitest/vitest.mjs');
  const run = spawnSync(
    process.execPath,
    [vitest, 'run', '--config', 'vitest.reliability.config.ts', ...(soak ? ['--testTimeout=3600000', '--hookTimeout=600000'] : [])],
    { cwd: ROOT, stdio: 'inherit', env: { ...process.env, TCP_PUNCH_SOAK: soak ? '1' : '0', TCP_PUNCH_SKIP_SUMMARY: SKIPS } },
  );
  exitCode = run.status ?? 1;
  writeSummary({ passed: exitCode === 0, wallSeconds: Math.round((Date.now() - t0) / 1000) }, soak);
} else {
  // Re-merge what the test files recorded (e.g. by a plain `npm test`, or `--soak --render` after re-running some
  // soak tests), keeping the last run's verdict if any.
  const lastPath = join(RESULTS, `summary-${soak ? 'soak' : 'results'}.json`);
  const last = existsSync(lastPath) ? JSON.parse(readFileSync(lastPath, 'utf8')) : {};
  const recorded = existsSync(RESULTS) && readdirSync(RESULTS).some((f) => isKind(f, soak));
  if (recorded) writeSummary({ passed: last.passed ?? null, wallSeconds: last.wallSeconds ?? null, ...(last.notes ? { notes: last.notes } : {}) }, soak);
  else if (existsSync(lastPath)) writeFileSync(SUMMARY, readFileSync(lastPath)); // nothing newer: render the last summary
  else throw new Error(`no recorded ${soak ? 'soak ' : ''}results in ${RESULTS}: run the suite first`);
}

const summary = JSON.parse(readFileSync(SUMMARY, 'utf8'));
const kind = summary.soak ? 'soak' : 'results';
writeFileSync(join(RESULTS, `summary-${kind}.json`), `${JSON.stringify(summary, null, 2)}\n`);
const md = render(summary);
if (args.has('--print')) {
  process.stdout.write(`${md}\n`);
} else {
  const [BEGIN, END] = markers(kind);
  const doc = readFileSync(DOC, 'utf8');
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/RELIABILITY.md has no ${kind} markers`);
  writeFileSync(DOC, `${doc.slice(0, a + BEGIN.length)}\n\n${md}\n\n${doc.slice(b)}`);
  process.stdout.write(`rendered the ${kind} section of docs/RELIABILITY.md from ${SUMMARY}\n`);
}
if (!args.has('--render') && existsSync(SKIPS)) process.stdout.write(readFileSync(SKIPS, 'utf8'));
process.exit(exitCode);

// ---------------------------------------------------------------------------------------------------------------

/** True for the results files a run of that kind writes: `<file>.json` (bounded) or `<file>.soak.json` (soak). */
function isKind(/** @type {string} */ name, /** @type {boolean} */ soakKind) {
  if (!name.endsWith('.json') || name.startsWith('summary')) return false;
  return name.endsWith('.soak.json') === soakKind;
}

/** Merges the results files of one kind into summary.json. */
function writeSummary(/** @type {Record<string, unknown>} */ run, /** @type {boolean} */ soakRun) {
  const files = {};
  for (const f of readdirSync(RESULTS).filter((n) => isKind(n, soakRun))) {
    files[f.replace(/(\.soak)?\.json$/, '')] = JSON.parse(readFileSync(join(RESULTS, f), 'utf8')).results;
  }
  const git = (a) => {
    try {
      return execFileSync('git', a, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const summary = {
    generatedAt: new Date().toISOString(),
    soak: soakRun,
    command: `node scripts/reliability.mjs${soakRun ? ' --soak' : ''}`,
    ...run,
    commit: git(['rev-parse', '--short', 'HEAD']) + (git(['status', '--porcelain', '--', 'lib', 'native']) ? ' + local changes' : ''),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? '', node: process.version, kernel: release() },
    results: files,
  };
  writeFileSync(SUMMARY, `${JSON.stringify(summary, null, 2)}\n`);
}

/** @param {any} s */
function render(s) {
  const r = s.results;
  const out = [];
  const n = (x) => (typeof x === 'number' ? x.toLocaleString('en-US') : x ?? '—');
  const gb = (bytes) => `${(bytes / 1e9).toFixed(2)} GB`;
  const codes = (h) => (h && Object.keys(h).length ? Object.entries(h).map(([k, v]) => `${k} ×${n(v)}`).join(', ') : '—');
  const table = (head, rows) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');

  // Totals across the suite.
  const abuse = r.abuse ?? {};
  const faults = r.faults ?? {};
  const load = r.load ?? {};
  let dials = 0;
  let bytes = 0;
  let failed = 0;
  for (const v of Object.values(abuse)) {
    dials += v.canary?.dials ?? 0;
    failed += (v.canary?.failed ?? 0) + (v.incoming?.failed ?? 0);
    bytes += v.canary?.bytesChecked ?? 0;
  }
  if (load.rounds) {
    dials += load.rounds.dials ?? 0;
    failed += (load.rounds.failed ?? 0) + (load.rounds.incoming?.failed ?? 0);
    bytes += load.rounds.bytesChecked ?? 0;
  }
  if (load.relayFirst) bytes += load.relayFirst.bytesChecked ?? 0;
  const fuzzRuns = countFuzzRuns(r);

  out.push(
    `Run of ${s.generatedAt.slice(0, 16).replace('T', ' ')} UTC, ${s.soak ? '**soak**' : 'bounded (CI)'} version, ` +
      `${s.passed === null ? 'merged from a vitest run' : s.passed ? 'all tests passed' : '**some tests FAILED**'}, ${s.wallSeconds ?? '?'} s wall, commit ${s.commit}, ` +
      `${s.machine.cpus} × ${s.machine.cpu}, Node ${s.machine.node}, Linux ${s.machine.kernel}. Reproduce: \`${s.command}\`.` +
      (s.notes ? ` ${s.notes}` : ''),
  );
  out.push('');
  out.push(
    table(
      ['', ''],
      [
        ['well-behaved dials during abuse and load (asserted zero failures)', `${n(dials)} dials, **${n(failed)} failed**`],
        ['bytes SHA-256-checked end to end (abuse, load, relay-first)', gb(bytes)],
        ['fuzz cases (structure-aware, property-based)', n(fuzzRuns)],
        ['hostile connections opened against the server', n(hostileConnections(abuse))],
      ],
    ),
  );

  // Abuse.
  out.push('', '### Abuse (each with the well-behaved pair dialing throughout)', '');
  const abuseRows = [];
  const row = (name, what, answered, v) =>
    abuseRows.push([
      name,
      what,
      answered,
      `${n(v.canary.ok)} ok / ${n(v.canary.failed + (v.incoming?.failed ?? 0))} failed (p50 ${v.canary.dialMs.p50} ms, max ${v.canary.dialMs.max} ms)`,
      `${v.server.rssMB.before} / ${v.server.rssMB.peak} / ${v.server.rssMB.after}`,
      `${v.server.fds.before} / ${v.server.fds.peak} / ${v.server.fds.after}`,
    ]);
  if (abuse.halfOpen) {
    const a = abuse.halfOpen.attack;
    row('half-open connections', `${n(a.opened)} sockets from ${abuse.halfOpen.ips ?? (s.soak ? 45 : 20)} IPs (idle, partial header, half-closed), ${n(a.peak)} open at once`, `${codes(a.codes)}; lived ${a.aliveMs.p50} ms median (handshake deadline); ${n(a.neverAccepted)} never accepted (listen backlog full)`, abuse.halfOpen);
  }
  if (abuse.slowloris) {
    const a = abuse.slowloris.attack;
    row('slowloris, every handshake', `${n(a.connections)} connections, 1 byte / 250 ms: ${Object.keys(a.byKind).join(', ')}`, Object.entries(a.byKind).map(([k, v]) => `${k}: ${codes(v.codes)} at ${v.aliveMs.p50} ms`).join('; '), abuse.slowloris);
  }
  if (abuse.registrationFlood) {
    const a = abuse.registrationFlood.attack;
    row('registration flood', `${n(a.fresh.codes.welcome ?? 0)} fresh ids at ${n(a.fresh.perSec)}/s; takeovers of the pair's ids without / with forged proofs`, `fresh: ${codes(a.fresh.codes)}; takeover: ${codes(a.takeoverNoProof.codes)}, ${codes(a.takeoverForged.codes)}; registry ${abuse.registrationFlood.registry.after} ids, ~${abuse.registrationFlood.heapBytesPerReservedId} B heap each`, abuse.registrationFlood);
  }
  if (abuse.connectFlood) {
    const a = abuse.connectFlood.attack;
    row('connect flood', `${a.attackers} registered attackers, ${n(a.sent)} connect requests (offline, self, each other; 1 in 4 at 3,000/s)`, `${codes(a.replies)}; cut: ${codes(a.cut)}`, abuse.connectFlood);
  }
  if (abuse.badRelayTokens) {
    const a = abuse.badRelayTokens.attack;
    row('relay joins with bad tokens', `${n(a.count)} joins: ${Object.keys(a.codes).join(', ')}`, `${Object.entries(a.codes).map(([k, v]) => `${k}: ${codes(v)}`).join('; ')}; sessions started: ${codes(abuse.badRelayTokens.relayPairs)}`, abuse.badRelayTokens);
  }
  if (abuse.nonReadingPeer) {
    const a = abuse.nonReadingPeer.attack;
    row('peer that reads nothing (control)', `${a.length} registered peers flooding requests, reading no reply (frame rate limit lifted)`, `cut after ${a.map((x) => x.closedAfterMs).join(', ')} ms having sent ${a.map((x) => x.sentMB).join(', ')} MB; server errors: ${codes(abuse.nonReadingPeer.server.errors)}`, abuse.nonReadingPeer);
  }
  for (const pump of ['native', 'js']) {
    const v = abuse[`relayNonReader-${pump}`];
    if (!v) continue;
    const a = v.attack;
    row(`relayed peer that reads nothing (${pump} pump)`, `${a.sessions} relayed sessions, sender writing flat out for ${(v.durationMs ?? (s.soak ? 60_000 : 4000)) / 1000} s`, `senders blocked ${Math.min(...a.results.map((x) => x.blockedMs))}+ ms after ${a.results.map((x) => x.writtenMB).join(', ')} MB (kernel buffers); server RSS +${v.rssGrowthMB} MB`, v);
  }
  if (abuse.malformedFrames) {
    const a = abuse.malformedFrames.attack;
    const byCode = {};
    for (const [k, v] of Object.entries(a.outcomes)) byCode[k.split(':')[1]] = (byCode[k.split(':')[1]] ?? 0) + v;
    row('malformed and oversized frames', `${n(a.frames)} mutated frames, at the first frame, mid-handshake and registered`, codes(byCode), abuse.malformedFrames);
  }
  out.push(table(['attack', 'what', 'what the attackers got', 'well-behaved pair meanwhile', 'server RSS MB before / peak / after', 'server fds before / peak / after'], abuseRows));

  // Faults.
  out.push('', '### Faults', '');
  const fr = [];
  if (faults.serverCrash) {
    const v = faults.serverCrash;
    const rr = v.rounds;
    fr.push([
      'server killed (SIGKILL) and restarted on its port, peers connected',
      `${rr.length} rounds × ${v.peers} peers: in-flight dials ${codes(sumCodes(rr.map((x) => x.inFlightCodes)))} within ${Math.max(...rr.map((x) => x.inFlightFailedWithinMs))} ms; all re-registered within ${Math.max(...rr.map((x) => x.reRegisteredWithinMs))} ms; later dials ${rr.reduce((t, x) => t + x.after.ok, 0)} ok / ${rr.reduce((t, x) => t + x.after.failed, 0)} failed; a dial issued while down: ${rr.map((x) => x.dialIssuedWhileDown).join(', ')}`,
      `peer process fds ${v.peerProcess.fdsBefore} → ${v.peerProcess.fdsAfter}`,
    ]);
  }
  if (faults.gracefulClose) {
    const v = faults.gracefulClose;
    fr.push(['server closed gracefully mid-dial and mid-relay-session', `dial in flight: ${v.dialInFlight}; relayed stream (${v.relayedStream.sentMB} MB sent) ended ${v.relayedStream.code} within ${v.relayedStream.endedWithinMs} ms; relay-end notices: ${codes(v.relayEndNotices)}; dial after restart: ${v.dialAfterRestart}`, `close took ${v.closeMs} ms`]);
  }
  if (faults.relayJoinRefusedOnOneSide) {
    const v = faults.relayJoinRefusedOnOneSide;
    fr.push(['one side\'s relay join refused', `dialer: ${v.dialer} within ${v.failedWithinMs} ms; responder: ${v.responder.join(', ')}`, `relay refusals: ${codes(v.relay)}`]);
  }
  if (faults.relayProcessKilled) {
    const v = faults.relayProcessKilled;
    fr.push([`relay (server process) killed mid-transfer, ${v.runs} runs`, v.results.map((x) => `${x.dialer} / ${codes(x.acceptor)} within ${x.bothEndedWithinMs} ms`).join('; '), 'no hang']);
  }
  if (faults.standaloneRelayKilled) {
    const v = faults.standaloneRelayKilled;
    fr.push([`standalone relay process killed mid-transfer, ${v.runs} runs`, v.results.map((x) => `${x.a} / ${x.b} within ${x.bothEndedWithinMs} ms`).join('; '), `fds ${v.fds.before} → ${v.fds.after}`]);
  }
  if (faults.peerVanishes) {
    const v = faults.peerVanishes;
    const cases = Object.entries(v).filter(([k]) => k.includes('/'));
    fr.push(['peer vanishes mid-punch (silent or gone, after coord / observe / sync / punch)', cases.map(([k, x]) => `${k}: ${x.code} in ${x.failedWithinMs} ms`).join('; '), `fds leaked ${v.fdsLeaked}; coordinations left ${v.serverCoordinationsAfter}; next dial ${v.nextDial}`]);
  }
  if (faults.peerProcessKilledOrFrozen) {
    const v = faults.peerProcessKilledOrFrozen;
    fr.push(['peer process killed or frozen at random moments of a dial', `${v.dials} dials: ${codes(v.outcomes)}`, `fds leaked ${v.fdsLeaked}; coordinations left ${v.serverCoordinationsAfter}`]);
  }
  out.push(table(['fault', 'outcome', 'cleanup'], fr));

  // Load.
  if (load.rounds) {
    const v = load.rounds;
    out.push('', `### Load: ${v.N} peers × ${v.M} dials per round, ${v.roundCount ?? v.rounds?.length} rounds, ${v.plan.strategies.join(' / ')}, ${v.plan.bytes / 1024} KiB each way, paced to ${v.plan.ratePerSec} dials/s`, '');
    out.push(
      table(
        ['round', 'dials', 'ok', 'failed', 'dials/s', 'dial ms p50 / p99 / max', 'server fds / heap MB / RSS MB', 'peers fds / heap MB / RSS MB'],
        (v.rounds ?? []).map((x) => [x.round, n(x.dials), n(x.ok), n(x.failed), x.dialsPerSec, `${x.dialMs.p50} / ${x.dialMs.p99} / ${x.dialMs.max}`, `${x.server.fds} / ${x.server.heapMB} / ${x.server.rssMB}`, `${x.peers.fds} / ${x.peers.heapMB} / ${x.peers.rssMB}`]),
      ),
    );
    out.push('');
    out.push(
      `Before the first round: server ${v.server?.before?.fds} fds, heap ${v.server?.before?.heapMB} MB; peers ${v.peers?.before?.fds} fds, heap ${v.peers?.before?.heapMB} MB. ` +
        `Retained heap growth from the first to the last round: server ${v.server?.heapGrowthFirstToLastRoundMB} MB, peers ${v.peers?.heapGrowthFirstToLastRoundMB} MB. ` +
        `Acceptor side: ${n(v.incoming?.ok)} streams verified, ${n(v.incoming?.failed)} failed. Paths: ${codes(sumCodes((v.rounds ?? []).map((x) => x.byPath)))}.`,
    );
  }
  if (load.relayFirst) {
    const v = load.relayFirst;
    const runs = (v.runs ?? []).map((x) => `${x.spreadMs ? `streams spread over ${x.spreadMs} ms` : 'short streams'}: ${n(x.dials)} dials, ${n(x.upgradeEvents)} upgrade events`).join('; ');
    out.push('', `relay-first under load (measured apart; see the findings below): ${runs}. Dial failures ${n(v.dialFailures)}; streams failing at their very end with every byte delivered ${n(v.failedAtEnd)}; any other failure ${n(v.otherFailures)}; ${gb(v.bytesChecked)} checked.`);
  }

  // Security (test/reliability/security.test.ts).
  const sec = r.security?.security;
  if (sec) {
    out.push('', '### Security claims checked live', '');
    const rows = [];
    for (const p of ['direct', 'relay']) {
      const v = sec[`tls-${p}`];
      if (v) rows.push([`secureSocket over a ${p} Peer.dial() with the server-assigned roles`, `${v.dialer && v.acceptor ? 'both sides verified' : 'FAILED'}, ${n(v.bytes)} bytes SHA-256-checked through TLS 1.3`]);
    }
    if (sec.onPathTokenTheft) rows.push(['on-path observer replays a sniffed relay token first (no TLS)', `the victim is paired with the attacker and believes it is talking to "${sec.onPathTokenTheft.bobSees.peerId}"; the owner's dial fails with ${sec.onPathTokenTheft.aliceDial}`]);
    if (sec.onPathTokenTheftWithTls) rows.push(['the same, with secureSocket on the victim', `the impostor is refused: ${sec.onPathTokenTheftWithTls.bobVerdict}`]);
    out.push(table(['claim', 'result'], rows));
  }

  // Fuzz.
  out.push('', '### Fuzzing', '');
  const fz = [];
  const fr2 = r['fuzz-frames']?.frames;
  if (fr2) {
    fz.push(['frame codec + message schemas (structure-aware mutations, any chunking, 3 size limits)', n(fr2.codec.runs), `${codes(fr2.codec.codes)}; ${n(fr2.codec.decodedMessages)} messages still valid, all canonical; ${fr2.codec.mutationKinds} mutation kinds`]);
    fz.push(['FramedSocket over real sockets', n(fr2.framedSocket.runs), codes(fr2.framedSocket.codes)]);
    fz.push(['readMessage over real sockets', n(fr2.readMessage.runs), codes(fr2.readMessage.codes)]);
  }
  const fa = r['fuzz-auth']?.auth;
  if (fa) {
    fz.push(['control registration, secret server (oracle: welcome iff right proof)', n(fa.secret.runs), `${n(fa.secret.welcomes)} welcomed, all with the right proof; ${codes(fa.secret.outcomes)}`]);
    fz.push(['control registration, open server', n(fa.open.runs), `${n(fa.open.welcomes)} welcomed; ${codes(fa.open.outcomes)}`]);
    fz.push(['direct-auth on a punched socket', n(fa.directAuth.runs), codes(fa.directAuth.outcomes)]);
  }
  const frl = r['fuzz-relay']?.relay;
  if (frl) {
    fz.push(['relay message bodies (decodeRelay)', n(frl.bodies.runs), codes(frl.bodies.codes)]);
    fz.push(['relay tokens: signed claims (oracle: verifies iff valid)', n(frl.signedClaims.runs), codes(frl.signedClaims.codes)]);
    fz.push(['relay tokens: mutated text', n(frl.mutatedTokens.runs), codes(frl.mutatedTokens.codes)]);
    fz.push(['relay joins against a live relay', n(frl.joins.runs), codes(frl.joins.codes)]);
  }
  const ft = r['fuzz-tunnel']?.tunnelWire;
  if (ft) fz.push(['tunnel handshake reader (readFirstByte)', n(ft.runs), codes(ft.outcomes)]);
  const fc = r['fuzz-cli']?.cli;
  if (fc) fz.push(['CLI parsers (host:port, port, count, size, duration, argv)', n(fc.runs), `host:port ${codes(fc.hostPort)}; ${codes(fc.sizesAndDurations)}`]);
  out.push(table(['target', 'cases', 'outcomes (only documented codes; never another exception, never a hang)'], fz));
  return out.join('\n');
}

function sumCodes(list) {
  const h = {};
  for (const x of list) for (const [k, v] of Object.entries(x ?? {})) h[k] = (h[k] ?? 0) + v;
  return h;
}

function countFuzzRuns(r) {
  let t = 0;
  const f = r['fuzz-frames']?.frames;
  if (f) t += f.codec.runs + f.framedSocket.runs + f.readMessage.runs;
  const a = r['fuzz-auth']?.auth;
  if (a) t += a.secret.runs + a.open.runs + a.directAuth.runs;
  const rl = r['fuzz-relay']?.relay;
  if (rl) t += rl.bodies.runs + rl.signedClaims.runs + rl.mutatedTokens.runs + rl.joins.runs;
  const tw = r['fuzz-tunnel']?.tunnelWire;
  if (tw) t += tw.runs;
  t += r['fuzz-cli']?.cli?.runs ?? 0;
  return t;
}

function hostileConnections(abuse) {
  let t = 0;
  t += abuse.halfOpen?.attack.opened ?? 0;
  t += abuse.slowloris?.attack.connections ?? 0;
  for (const k of ['fresh', 'takeoverNoProof', 'takeoverForged']) t += Object.values(abuse.registrationFlood?.attack[k]?.codes ?? {}).reduce((a, b) => a + b, 0);
  t += abuse.connectFlood?.attack.attackers ?? 0;
  t += abuse.badRelayTokens?.attack.count ?? 0;
  t += abuse.nonReadingPeer?.attack.length ?? 0;
  t += abuse.malformedFrames?.attack.frames ?? 0;
  return t;
}
