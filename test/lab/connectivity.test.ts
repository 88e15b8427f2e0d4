// Symmetric NATs against sides that filter nothing: the real library (server + two Peers from dist/, driven
// through the public API: Peer.connect, peer.dial({ strategy: 'direct' }), DialResult.path) between a peer behind
// MASQUERADE --random-fully and a peer behind a full-cone NAT or a port-forwarding (DMZ) router, dialled both
// ways. The symmetric side's SYN towards the peer leaves from a port the server never saw, but the other side's NAT
// forwards it anyway; the punch has to accept it (from the peer's host, on any port) and let direct-auth decide.
// Then the raw punch() between two ICMP-answering NATs with one side late, swept over one retry round, and over
// IPv6 between two hosts whose IPv4 is behind symmetric NATs and whose IPv6 sits behind stateful firewalls
// (RFC 6092: no translation, crossing SYNs allowed), bound to the exact global address.
//
// Root only; one topology per describe. Rows and times: docs/LAB.md ("Open filtering and IPv6").
//   npx vitest run test/lab/connectivity.test.ts
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LibraryPair, SERVER_PORT } from './matrix-driver.js';
import { createLab, LAB_DIR, labPrerequisites, type Lab, type LabSpec } from './topology.js';

const pre = labPrerequisites({ delay: false, hairpin: true });
if (!pre.ok) console.warn(`connectivity lab skipped, missing: ${pre.missing.join(', ')}`);

const BYTES = 256 << 10;
const DIAL_TIMEOUT_MS = 15_000;

/** One topology and one LibraryPair for the enclosing describe; always torn down. */
function usePair(spec: LabSpec, opts: Parameters<typeof LibraryPair.start>[1] = {}): () => LibraryPair {
  let lab: Lab | undefined;
  let pair: LibraryPair | undefined;
  beforeAll(async () => {
    lab = await createLab(spec);
    pair = await LibraryPair.start(lab, opts);
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

const rows = [
  { name: 'symmetric × full-cone', spec: { a: 'symmetric', b: 'full-cone' } },
  { name: 'symmetric × dmz (port-forwarding router)', spec: { a: 'symmetric', b: 'dmz' } },
] as const satisfies { name: string; spec: LabSpec }[];

describe.skipIf(!pre.ok)('symmetric NAT against a side that filters nothing: direct, both ways', () => {
  for (const row of rows) {
    describe(row.name, () => {
      // With the NAT probe on (the default): the open side's probe measures open filtering, so the server's
      // punch-skip rule (ERR_PUNCH_UNLIKELY) lets the symmetric side punch towards it.
      const pair = usePair(row.spec);
      it('the probes measured what the skip rule needs: a symmetric mapping on a, open filtering on b', () => {
        expect(pair().nat('a')).toEqual({ mapping: 'dependent', filtering: 'port-dependent' });
        expect(pair().nat('b').filtering).toBe('open');
      });
      for (const from of ['a', 'b'] as const) {
        it(`${from} dials ${from === 'a' ? 'b' : 'a'}: direct`, async () => {
          const r = await pair().dial(from, { strategy: 'direct', timeoutMs: DIAL_TIMEOUT_MS, bytes: BYTES });
          const why = JSON.stringify(r, null, 1);
          expect(r.error, why).toBeNull();
          expect(r.path, why).toBe('direct');
          expect(r.integrity, why).toMatchObject({ forward: true, backward: true, bytes: BYTES });
          expect(r.leaks, why).toBe(0);
          expect(r.orphans, why).toBe(0);
          console.log(`${row.name} ${from}→: ${r.path} attempt ${r.attempt}, ${r.connectMs} ms`);
        }, 90_000);
      }
    });
  }
});

const PUNCH_CHILD = `${LAB_DIR}/punch-child.mjs`;

/** Runs punch() once inside a host's namespace (test/lab/punch-child.mjs) and resolves what it printed. */
async function labPunch(lab: Lab, node: 'a' | 'b', args: Record<string, unknown>): Promise<Record<string, any>> {
  const child = lab.spawn(node, [process.execPath, PUNCH_CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  await once(child, 'exit');
  try {
    return JSON.parse(out.trim().split('\n').at(-1) ?? '');
  } catch {
    throw new Error(`punch-child on ${node}: no result (${out}${err})`);
  }
}

// Both NATs answer an early SYN with ICMP (port-unreachable on a's, admin-prohibited on b's), so the early side's
// connect is aborted a round trip after each SYN and retried until the late side's SYN has opened the other NAT.
// Whether a retry pause leaves a hole depends on where in that round the late SYN arrives, so the start is swept
// over one round (about 45 ms on 20 ms links) in 3 ms steps, with the NATs' ICMP rate limit off (else the limiter,
// not the phase, decides which SYNs get their ICMP). A 5 ms pause after each abort failed several of these
// phases: the late SYN met only the listener, and its dead-end request held the 4-tuple until the punch timed out.
describe.skipIf(!pre.ok)('ICMP-answering NATs, the peer late by any part of a retry round', () => {
  let lab: Lab | undefined;
  beforeAll(async () => {
    lab = await createLab({ a: { nat: 'cone-icmp', icmp: 'port', delayMs: 20 }, b: { nat: 'cone-icmp', icmp: 'admin', delayMs: 20 } });
    for (const nat of ['nat-a', 'nat-b']) await lab.exec(nat, ['sysctl', '-qw', 'net.ipv4.icmp_ratelimit=0'], { check: true });
  }, 60_000);
  afterAll(async () => {
    await lab?.destroy();
  });

  it('punch() connects both sides at every phase, the early side after ICMP aborts', async () => {
    const L = lab!;
    const failed: string[] = [];
    let refused = 0;
    for (let i = 0; i < 16; i++) {
      const lateMs = 200 + 3 * i;
      const [pa, pb] = [42000 + 2 * i, 42001 + 2 * i];
      const startAt = Date.now() + 800; // both children up before the early side's first SYN
      const [a, b] = await Promise.all([
        labPunch(L, 'a', { localPort: pa, family: 4, remote: { host: L.peers.b.publicIp, port: pb }, timeoutMs: 4000, startAt }),
        labPunch(L, 'b', { localPort: pb, family: 4, remote: { host: L.peers.a.publicIp, port: pa }, timeoutMs: 4000, startAt: startAt + lateMs }),
      ]);
      if (!(a.ok && b.ok && a.got === 'hello\n' && b.got === 'hello\n')) failed.push(`${lateMs} ms late: ${JSON.stringify({ a, b })}`);
      if (a.ok && a.attempts > 1) refused++;
    }
    expect(failed).toEqual([]);
    expect(refused).toBe(16); // every early first SYN was answered by ICMP and retried
  }, 120_000);
});

describe.skipIf(!pre.ok)('IPv6 behind stateful firewalls, IPv4 behind symmetric NATs', () => {
  let lab: Lab | undefined;
  const L = (): Lab => lab ?? (() => { throw new Error('lab not built'); })();
  // Each host also holds a second global address that its default route prefers as source (as a temporary
  // privacy address would be): a punch from the wildcard leaves from there, not from the address the other side
  // targets, and the other side's firewall drops it.
  const decoy = (who: 'a' | 'b'): string => `2001:db8:${who === 'a' ? 1 : 2}:1::99`;
  beforeAll(async () => {
    lab = await createLab({ a: 'symmetric', b: 'symmetric', ipv6: true });
    for (const who of ['a', 'b'] as const) {
      const gw = `2001:db8:${who === 'a' ? 1 : 2}:1::1`;
      await lab.exec(who, ['ip', '-6', 'addr', 'add', `${decoy(who)}/64`, 'dev', 'eth0', 'nodad'], { check: true });
      await lab.exec(who, ['ip', '-6', 'route', 'replace', 'default', 'via', gw, 'src', decoy(who)], { check: true });
    }
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  const both = (local: (who: 'a' | 'b') => string | undefined, timeoutMs: number) => {
    const startAt = Date.now() + 1000; // both children up (Node start-up in a namespace) before the punch
    return Promise.all(
      (['a', 'b'] as const).map((who) => {
        const other = who === 'a' ? 'b' : 'a';
        return labPunch(L(), who, {
          localAddress: local(who),
          family: 6,
          localPort: 41000 + (who === 'a' ? 1 : 2),
          remote: { host: L().peers[other].ip6, port: 41000 + (other === 'a' ? 1 : 2) },
          timeoutMs,
          startAt,
        });
      }),
    );
  };

  it('punch() from the exact global address connects directly, on that address', async () => {
    const [a, b] = await both((who) => L().peers[who].ip6, 5000);
    expect(a, JSON.stringify(a)).toMatchObject({ ok: true, got: 'hello\n', local: { host: L().peers.a.ip6, port: 41001 }, remote: { host: L().peers.b.ip6, port: 41002 } });
    expect(b, JSON.stringify(b)).toMatchObject({ ok: true, got: 'hello\n', local: { host: L().peers.b.ip6, port: 41002 }, remote: { host: L().peers.a.ip6, port: 41001 } });
    console.log(`IPv6 punch through two stateful firewalls: a ${a?.elapsedMs} ms (${a?.via}), b ${b?.elapsedMs} ms (${b?.via})`);
  });

  it('from the wildcard the kernel picks the other address and the firewalls drop it: ETIMEDOUT', async () => {
    const [a, b] = await both(() => undefined, 2000);
    expect(a, JSON.stringify(a)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
    expect(b, JSON.stringify(b)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
  });
});

// Dual-stack Peers (PeerOptions.dualStackServer): the server listens on both families (`host: '::'`), each peer
// registers IPv4 over its control connection and IPv6 with `register-family`, and a dial tries IPv6 first.
const v6Server = (lab: Lab): string => `[${lab.server.ip6}]:${SERVER_PORT}`;
const dualRows = [
  {
    name: 'symmetric IPv4 NATs, IPv6 behind stateful firewalls: direct over IPv6',
    spec: { a: 'symmetric', b: 'symmetric', ipv6: true },
    dual: { a: true, b: true },
    family: 6,
  },
  {
    name: 'IPv4-only host × dual-stack host (cone NATs): direct over IPv4',
    spec: { a: { nat: 'cone', ipv6: false }, b: 'cone', ipv6: true },
    dual: { a: false, b: true },
    family: 4,
  },
  {
    name: 'cone × cone, both families open: direct over IPv6',
    spec: { a: 'cone', b: 'cone', ipv6: true },
    dual: { a: true, b: true },
    family: 6,
  },
  {
    // a's firewall drops IPv6 between the peers (not to the server): attempt 1 (IPv6) times out, attempt 2 runs in
    // IPv4 and connects.
    name: 'cone × cone, IPv6 between the peers blocked: IPv6 fails, then direct over IPv4',
    spec: { a: 'cone', b: 'cone', ipv6: true },
    dual: { a: true, b: true },
    family: 4,
    block6: true,
  },
] as const satisfies { name: string; spec: LabSpec; dual: { a: boolean; b: boolean }; family: 4 | 6; block6?: boolean }[];

describe.skipIf(!pre.ok)('dual-stack Peers: a dial tries IPv6 first', () => {
  for (const row of dualRows) {
    describe(row.name, () => {
      let lab: Lab | undefined;
      let pair: LibraryPair | undefined;
      beforeAll(async () => {
        lab = await createLab(row.spec);
        if ('block6' in row) {
          const [a6, b6] = [lab.peers.a.ip6 ?? '', lab.peers.b.ip6 ?? ''];
          for (const [src, dst] of [[a6, b6], [b6, a6]] as const)
            await lab.exec('nat-a', ['ip6tables', '-I', 'FORWARD', '-s', src, '-d', dst, '-j', 'DROP'], { check: true });
        }
        const peer = (who: 'a' | 'b') => (row.dual[who] ? { dualStackServer: v6Server(lab!) } : {});
        pair = await LibraryPair.start(lab, { server: { host: '::' }, peer: { a: peer('a'), b: peer('b') } });
      }, 60_000);
      afterAll(async () => {
        try {
          await pair?.close();
        } finally {
          await lab?.destroy();
        }
      });
      for (const from of ['a', 'b'] as const) {
        const to = from === 'a' ? 'b' : 'a';
        it(`${from} dials ${to}: direct over IPv${row.family}`, async () => {
          const r = await pair!.dial(from, { strategy: 'direct', timeoutMs: DIAL_TIMEOUT_MS, bytes: BYTES });
          const why = JSON.stringify(r, null, 1);
          expect(r.error, why).toBeNull();
          expect(r.path, why).toBe('direct');
          expect(r.family, why).toBe(row.family);
          // IPv6: the other host's exact global address (no translation); IPv4: its NAT's public address.
          expect(r.remote?.host, why).toBe(row.family === 6 ? lab!.peers[to].ip6 : lab!.peers[to].publicIp);
          expect(r.integrity, why).toMatchObject({ forward: true, backward: true, bytes: BYTES });
          expect(r.leaks, why).toBe(0);
          expect(r.orphans, why).toBe(0);
          if ('block6' in row) expect(r.attempt, why).toBe(2);
          console.log(`dual-stack ${row.name} ${from}→: ${r.path} IPv${r.family} attempt ${r.attempt}, ${r.connectMs} ms`);
        }, 90_000);
      }
    });
  }
});
