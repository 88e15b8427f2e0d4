/**
 * Abuse: each attack runs against a server in its own process while a well-behaved pair keeps dialing each other
 * through the same server (both directions, every strategy, 64 KiB each way, SHA-256 checked) — the pair must see
 * zero failures. The server's memory and descriptors are sampled throughout; numbers go to .results/abuse.json.
 * Limits are the defaults (SERVER_DEFAULTS, RELAY_DEFAULTS) unless a test says otherwise and why.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

import { FrameDecoder } from '../../lib/protocol/frame.js';
import { decodeMessage, encodeMessage } from '../../lib/protocol/messages.js';
import type { Message } from '../../lib/protocol/messages.js';
import { mutatedFrameArb } from '../fuzz/mutate.js';
import { Attacker, ServerChild, attackerIps, mb, netFds, underAttack } from './helpers.js';
import { record, scale } from './summary.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

async function setup(options: Parameters<typeof ServerChild.start>[0] = {}) {
  const srv = await ServerChild.start(options);
  cleanup.push(() => srv.kill());
  const attacker = await Attacker.start();
  cleanup.push(() => attacker.close());
  return { srv, attacker };
}

type Run = Awaited<ReturnType<typeof underAttack>>;

/** The numbers every abuse scenario reports, and the pair's zero-failure check. */
function report(name: string, r: Run, extra: Record<string, unknown>): void {
  record('abuse', name, {
    canary: { dials: r.canary.dials, ok: r.canary.ok, failed: r.canary.failed, codes: r.canary.codes, byPath: r.canary.byPath, bytesChecked: r.canary.bytesChecked + r.incoming.bytesChecked, dialMs: r.canary.dialMs },
    incoming: { ok: r.incoming.ok, failed: r.incoming.failed, codes: r.incoming.codes },
    server: {
      rssMB: { before: mb(r.server.before.rss), peak: mb(r.server.peak.rss), after: mb(r.server.after.rss) },
      heapMB: { before: mb(r.server.before.heapUsed), after: mb(r.server.after.heapUsed) },
      fds: { before: r.server.before.fds, peak: r.server.peak.fds, after: r.server.after.fds, pumpIdlePipes: r.server.after.stats.relay?.pump.pipesIdle },
      peakConnections: r.server.peak.connections,
      errors: r.server.after.stats.errors,
      relayRejected: r.server.after.stats.relay?.rejected,
    },
    wallMs: r.wallMs,
    ...extra,
  });
  expect(r.canary.samples).toEqual([]);
  expect(r.canary.failed).toBe(0);
  expect(r.canary.ok).toBeGreaterThan(0);
  expect(r.incoming.failed).toBe(0);
  // Every connection the attack opened is gone again.
  expect(netFds(r.server.after)).toBeLessThanOrEqual(netFds(r.server.before));
}

describe('abuse, with a well-behaved pair served throughout', () => {
  const T = { timeout: scale(180_000, 1_800_000) };

  it('thousands of half-open connections (idle, partial header, half-closed) from many addresses', T, async () => {
    const { srv, attacker } = await setup();
    const ips = attackerIps(scale(20, 45));
    const r = await underAttack(srv, () =>
      attacker.attack<{ opened: number; peak: number; codes: Record<string, number>; connectErrors: Record<string, number>; aliveMs: unknown; neverAccepted: number }>('half-open', {
        port: srv.port,
        ips,
        perIp: 200,
        modes: ['idle', 'partial', 'half-closed'],
        durationMs: scale(5000, 120_000),
        // The default handshake deadline (5 s) reaps what is open when the attack stops.
        settleMs: 7000,
        reopen: true,
      }),
    );
    report('halfOpen', r, { attack: r.attack, ips: ips.length });
    expect(r.attack.peak).toBeGreaterThan(scale(2000, 5000));
    // Each kind ends the documented way: the handshake deadline for silence and partial headers.
    for (const [k, n] of Object.entries(r.attack.codes)) {
      if (k.startsWith('half-closed')) expect(k).toBe('half-closed:closed');
      else expect(k).toMatch(/^(idle|partial):ERR_HANDSHAKE_TIMEOUT$/);
      expect(n).toBeGreaterThan(0);
    }
  });

  it('slowloris on every handshake: hello, auth, observe, relay join, and a registered peer stuck mid-frame', T, async () => {
    // Registered peers are dropped after idleTimeoutMs of no complete frame; 60 s by default, 4 s here so that the
    // test stays short (the canary pings every keepaliveMs, 1 s here).
    const { srv, attacker } = await setup({ idleTimeoutMs: 4000, keepaliveMs: 1000 });
    const ips = attackerIps(scale(10, 40), 2);
    const r = await underAttack(srv, () =>
      attacker.attack<{ connections: number; byKind: Record<string, { codes: Record<string, number>; completedFrame: number; aliveMs: { max: number } }> }>('slowloris', {
        port: srv.port,
        ips,
        perIp: scale(20, 40),
        kinds: ['hello', 'auth', 'observe', 'relay-join', 'registered'],
        byteIntervalMs: 250,
        durationMs: scale(6000, 60_000),
      }),
    );
    report('slowloris', r, { attack: r.attack });
    for (const [kind, v] of Object.entries(r.attack.byKind)) {
      expect(v.codes, kind).toEqual({ [kind === 'registered' ? 'ERR_IDLE_TIMEOUT' : 'ERR_HANDSHAKE_TIMEOUT']: Object.values(v.codes)[0] });
      // Nobody finished a handshake frame before the deadline (the registered ones only ever send 5 bytes).
      if (kind !== 'registered') expect(v.completedFrame).toBe(0);
    }
  });

  it('a flood of registrations: fresh ids, and takeovers of the pair\'s ids with no proof and with forged proofs', T, async () => {
    const { srv, attacker } = await setup();
    const ips = attackerIps(20, 5);
    type Flood = { codes: Record<string, number>; ms: number; perSec: number };
    const r = await underAttack(srv, async () => ({
      fresh: await attacker.attack<Flood>('register-flood', { port: srv.port, ips, count: scale(3000, 60_000), concurrency: 100, idPrefix: 'reg', hold: false, maxDurationMs: scale(30_000, 900_000) }),
      takeoverNoProof: await attacker.attack<Flood>('register-flood', { port: srv.port, ips, count: scale(400, 5000), concurrency: 50, ids: ['canary-a', 'canary-b'], proof: 'empty', hold: false, maxDurationMs: 60_000 }),
      takeoverForged: await attacker.attack<Flood>('register-flood', { port: srv.port, ips, count: scale(400, 5000), concurrency: 50, ids: ['canary-a', 'canary-b'], proof: 'random', hold: false, maxDurationMs: 60_000 }),
    }));
    const welcomed = r.attack.fresh.codes.welcome ?? 0;
    const heapPerId = welcomed > 0 ? Math.round((r.server.after.heapUsed - r.server.before.heapUsed) / welcomed) : null;
    report('registrationFlood', r, { attack: r.attack, registry: { before: r.server.before.registry, after: r.server.after.registry }, heapBytesPerReservedId: heapPerId });
    expect(welcomed).toBeGreaterThan(0);
    // Every fresh id that was welcomed stays reserved (idReservationMs, 10 min) for the holder of its token.
    expect(r.server.after.registry).toBe((r.server.before.registry ?? 0) + welcomed);
    for (const k of Object.keys(r.attack.fresh.codes)) expect(['welcome', 'ERR_RATE_LIMITED']).toContain(k);
    expect(Object.keys(r.attack.takeoverNoProof.codes).filter((k) => k !== 'ERR_RATE_LIMITED')).toEqual(['ERR_ID_TAKEN']);
    expect(Object.keys(r.attack.takeoverForged.codes).filter((k) => k !== 'ERR_RATE_LIMITED')).toEqual(['ERR_AUTH_FAILED']);
  });

  it('a flood of connect requests: to nobody, to themselves, to each other, and faster than the frame rate', T, async () => {
    const { srv, attacker } = await setup();
    const r = await underAttack(srv, () =>
      attacker.attack<{ sent: number; replies: Record<string, number>; cut: Record<string, number> }>('connect-flood', {
        port: srv.port,
        ips: attackerIps(10, 6),
        attackers: 20,
        // Frames per second per attacker: three stay under frameRate (200/s), one goes far over it.
        framesPerSec: [150, 150, 150, 3000],
        durationMs: scale(4000, 90_000),
        targets: ['nobody-here', '$self', '$next'],
      }),
    );
    const coordsAfter = r.server.after.stats.coordinations;
    report('connectFlood', r, { attack: r.attack, coordinations: { started: r.server.after.stats.totals.coordinations, after: coordsAfter } });
    // Offline and self targets are refused at once; dials between attackers are coordinated until the per-peer cap.
    expect(r.attack.replies['reject:ERR_PEER_OFFLINE']).toBeGreaterThan(0);
    expect(r.attack.replies['reject:ERR_INVALID_TARGET']).toBeGreaterThan(0);
    expect((r.attack.replies['reject:ERR_TOO_MANY_PENDING'] ?? 0) + (r.attack.replies['reject:ERR_PEER_BUSY'] ?? 0)).toBeGreaterThan(0);
    // The fast ones (every 4th) are cut by the frame-rate limit; the others stay until the attack ends.
    expect(r.attack.cut.ERR_RATE_LIMITED).toBe(5);
    expect(r.attack.cut['open-at-end']).toBe(15);
    expect(coordsAfter).toBe(0);
  });

  it('relay joins with bad, forged, expired, oversized, replayed and tampered tokens: never paired', T, async () => {
    const { srv, attacker } = await setup();
    const r = await underAttack(
      srv,
      async ({ leaked }) => {
        // Let the pair use a few relayed sessions first, so that there are real (used) tokens to replay.
        const t0 = Date.now();
        while (leaked.length < 8 && Date.now() - t0 < 10_000) await sleep(50);
        return attacker.attack<{ count: number; codes: Record<string, Record<string, number>> }>('bad-relay', {
          port: srv.port,
          ips: attackerIps(10, 7),
          count: scale(2000, 50_000),
          concurrency: 50,
          leaked: leaked.slice(),
        });
      },
      { leakTokens: true },
    );
    report('badRelayTokens', r, { attack: r.attack, relayPairs: r.server.after.relayPairs });
    const expected: Record<string, string[]> = {
      random: ['ERR_RELAY_TOKEN_INVALID'],
      forged: ['ERR_RELAY_TOKEN_INVALID'],
      'forged-expired': ['ERR_RELAY_TOKEN_INVALID'],
      'malformed-body': ['ERR_MALFORMED_FRAME'],
      oversize: ['ERR_MALFORMED_FRAME'],
      empty: ['ERR_RELAY_TOKEN_INVALID'],
      'join-then-data': ['ERR_RELAY_TOKEN_INVALID'],
      'leaked-replay': ['ERR_RELAY_TOKEN_REUSED'],
      'leaked-tampered': ['ERR_RELAY_TOKEN_INVALID'],
    };
    for (const [variant, codes] of Object.entries(r.attack.codes)) {
      // ERR_RATE_LIMITED: the address's connection rate (50/s) refused the connection before any token was read
      // (the soak sends far more joins than the bucket allows).
      for (const code of Object.keys(codes)) expect([...expected[variant]!, 'ERR_RATE_LIMITED'], `${variant}: ${code}`).toContain(code);
      expect(Object.keys(codes).filter((c) => c !== 'ERR_RATE_LIMITED').length, variant).toBeGreaterThan(0);
    }
    expect(Object.keys(r.attack.codes)).toContain('leaked-replay');
    // The relay only ever connected the pair to itself: not one session with anybody else.
    expect(Object.keys(r.server.after.relayPairs)).toEqual(['canary-a|canary-b']);
  });

  it('a peer that reads nothing while it floods requests is cut, and the server does not buffer its replies', T, async () => {
    // frameRate/frameBurst raised so that a connection can fill its socket buffers within seconds: at the default
    // 200 frames/s a non-reader takes minutes to get there, but without a cap its replies then pile up the same way.
    const { srv, attacker } = await setup({ frameRate: 1_000_000, frameBurst: 1_000_000 });
    const ips = attackerIps(4, 8);
    const r = await underAttack(srv, () =>
      Promise.all(
        ips.map((ip, n) =>
          attacker.attack<{ sentFrames: number; sentMB: number; closedAfterMs: number | null; openAtEnd: boolean; error: string | null }>('non-reader', {
            port: srv.port,
            ip,
            n,
            durationMs: scale(10_000, 60_000),
          }),
        ),
      ),
    );
    report('nonReadingPeer', r, { attack: r.attack, rssGrowthMB: mb(r.server.peak.rss - r.server.before.rss) });
    for (const a of r.attack) expect(a.openAtEnd).toBe(false);
    expect(r.server.after.stats.errors.ERR_RATE_LIMITED).toBe(ips.length);
  });

  it.each(['native', 'js'] as const)('relayed sessions whose reader reads nothing: the sender is held back, relay memory stays bounded (%s pump)', T, async (pump) => {
    const { srv, attacker } = await setup({ relay: { pump } });
    const r = await underAttack(srv, () =>
      attacker.attack<{ sessions: number; results: { writtenMB: number; blockedMs: number; path: string; pendingMB: number }[] }>('relay-hog', {
        server: srv.address,
        ips: attackerIps(4, 9),
        pairs: scale(6, 12),
        durationMs: scale(4000, 60_000),
      }),
    );
    report(`relayNonReader-${pump}`, r, { attack: r.attack, durationMs: scale(4000, 60_000), rssGrowthMB: mb(r.server.peak.rss - r.server.before.rss) });
    expect(r.attack.sessions).toBe(scale(6, 12));
    for (const x of r.attack.results) {
      expect(x.path).toBe('relay');
      // Backpressure reached the sender: it spent time blocked, having written only what buffers along the way hold.
      expect(x.blockedMs).toBeGreaterThan(0);
    }
  });

  it('oversized and malformed frames at every stage of a connection (first frame, mid-handshake, registered)', T, async () => {
    const { srv } = await setup();
    const frames = fc.sample(mutatedFrameArb, { numRuns: scale(1200, 30_000), seed: 7 });
    const ips = attackerIps(30, 10);
    const stages = ['first', 'after-hello', 'registered'] as const;
    const outcomes: Record<string, number> = {};
    const r = await underAttack(srv, async () => {
      let i = 0;
      await Promise.all(
        Array.from({ length: 40 }, async () => {
          while (i < frames.length) {
            const k = i++;
            const stage = stages[k % stages.length]!;
            const code = await malformedAt(srv.port, ips[k % ips.length]!, stage, frames[k]!.bytes, `mal-${k}`);
            outcomes[`${stage}:${code}`] = (outcomes[`${stage}:${code}`] ?? 0) + 1;
          }
        }),
      );
      return { frames: frames.length, outcomes };
    });
    report('malformedFrames', r, { attack: r.attack });
    const documented = new Set([
      'ERR_BAD_MAGIC', 'ERR_UNSUPPORTED_VERSION', 'ERR_FRAME_TOO_LARGE', 'ERR_UNKNOWN_TYPE', 'ERR_MALFORMED_FRAME',
      'ERR_UNEXPECTED_MESSAGE', 'ERR_HANDSHAKE_TIMEOUT', 'ERR_INVALID_TOKEN', 'ERR_RELAY_TOKEN_INVALID', 'ERR_RELAY_PROTOCOL',
      'ERR_AUTH_FAILED', 'ERR_ID_TAKEN', 'ERR_RATE_LIMITED',
      // a frame that happens to be valid where it was sent: answered (or not) and the connection kept
      'answered', 'kept',
    ]);
    for (const key of Object.keys(outcomes)) expect(documented.has(key.split(':')[1]!), key).toBe(true);
  });
});

/** Sends one mutated frame at a stage of a fresh connection; resolves the error code it got, or what happened. */
async function malformedAt(port: number, ip: string, stage: 'first' | 'after-hello' | 'registered', bytes: Buffer, id: string): Promise<string> {
  const sock = connect({ host: '127.0.0.1', port, localAddress: ip });
  sock.on('error', () => undefined);
  try {
    await once(sock, 'connect');
    const dec = new FrameDecoder({ maxFrameSize: 65535 });
    const inbox: Message[] = [];
    let closed = false;
    sock.on('data', (d: Buffer) => {
      try {
        dec.write(d);
        for (let f = dec.read(); f; f = dec.read()) inbox.push(decodeMessage(f));
      } catch {
        inbox.push({ type: 'error', code: 'GARBLED', message: '' });
      }
    });
    sock.once('close', () => (closed = true));
    const next = async (ms: number): Promise<Message | undefined> => {
      const until = Date.now() + ms;
      while (inbox.length === 0 && !closed && Date.now() < until) await sleep(5);
      return inbox.shift();
    };
    if (stage !== 'first') {
      sock.write(encodeMessage({ type: 'hello', id, nonce: new Uint8Array(16), software: 'mal', private: [], warm: false }));
      const ch = await next(3000);
      if (ch?.type !== 'challenge') return `setup-${ch?.type ?? 'closed'}`;
      if (stage === 'registered') {
        sock.write(encodeMessage({ type: 'auth', proof: new Uint8Array(0) }));
        const w = await next(3000);
        if (w?.type !== 'welcome') return `setup-${w?.type ?? 'closed'}`;
      }
    }
    sock.write(bytes);
    // A documented error frame, or (a mutation that is still valid here) an answer or nothing, with the connection kept.
    for (;;) {
      const m = await next(1500);
      if (!m) return closed ? 'closed' : 'kept';
      if (m.type === 'error') return m.code;
      if (closed) return 'answered';
    }
  } finally {
    sock.destroy();
  }
}
