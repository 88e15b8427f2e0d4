/**
 * Fuzzing the CLI's configuration parsers (lib/cli/args.ts), which see untrusted text (flags, environment,
 * files): structure-aware generators (host:port forms with every edge a user or a script can produce, sizes and
 * durations with units, digits in other scripts, signs, exponents, huge numbers) plus arbitrary strings.
 * Invariant: a typed value within the documented range, or a CliError with exit code 2 that names the flag;
 * never another exception. The last case guards a fixed finding: see its comment.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { parse, parseBytes, parseCount, parseDuration, parseHostPort, parsePort, parseProbePorts } from '../../lib/cli/args.js';
import { readSettings } from '../../lib/cli/config.js';
import { mapsOf } from '../../lib/cli/connect.js';
import { CliError, EXIT } from '../../lib/cli/errors.js';
import { servicesOf } from '../../lib/cli/expose.js';
import { PEER_ID_PATTERN } from '../../lib/protocol/messages.js';
import { resolveOptions } from '../../lib/server/options.js';
import { resolveLimits } from '../../lib/relay/limits.js';
import { record, scale } from '../reliability/summary.js';

const stats: Record<string, unknown> = {};

/** Runs `fn`; returns 'ok' or the CliError's exit code, and fails on any other exception. */
function outcome(fn: () => unknown, flag: string): { kind: 'ok' | 'usage'; value?: unknown } {
  try {
    return { kind: 'ok', value: fn() };
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(EXIT.USAGE);
    expect((err as CliError).message).toContain(flag);
    return { kind: 'usage' };
  }
}

const digits = fc.oneof(
  fc.stringMatching(/^\d{1,6}$/),
  fc.constantFrom('0', '00080', '65535', '65536', '99999', '4294967297', '9'.repeat(30), '\u0668\u0660', '\uff18\uff10', '1e3', '0x50', '+80', '-1', ' 80', '80 ', '8.0', ''),
);
const host = fc.oneof(
  fc.constantFrom('127.0.0.1', 'localhost', 'example.com', 'a-b.c', '1.2.3.256', '', '-', 'h_st', 'h st', 'héllo', '::1', '[::1]', 'fe80::1%eth0', '1::2::3', '::ffff:1.2.3.4'),
  fc.ipV4(),
  fc.ipV6(),
  fc.domain(),
  fc.string({ maxLength: 20 }),
);
const hostPort = fc.oneof(
  fc.tuple(host, digits).map(([h, p]) => `${h}:${p}`),
  fc.tuple(host, digits).map(([h, p]) => `[${h}]:${p}`),
  fc.tuple(host, digits).map(([h, p]) => `[${h}:${p}`),
  digits,
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

describe('fuzz: CLI configuration parsers', () => {
  it('parseHostPort / parsePort: a valid endpoint within the port range, or a usage error naming the flag', () => {
    const kinds: Record<string, number> = {};
    fc.assert(
      fc.property(hostPort, fc.constantFrom(0, 1), fc.option(fc.constantFrom('127.0.0.1', '0.0.0.0')), (v, minPort, defaultHost) => {
        const r = outcome(() => parseHostPort(v, '--server', { minPort, ...(defaultHost ? { defaultHost } : {}) }), '--server');
        kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
        if (r.kind === 'ok') {
          const { host: h, port } = r.value as { host: string; port: number };
          expect(Number.isInteger(port) && port >= minPort && port <= 65535).toBe(true);
          expect(/^[A-Za-z0-9.-]+$/.test(h) || (v.startsWith('[') && h.includes(':'))).toBe(true);
        }
        const p = outcome(() => parsePort(v, '--port', 7770, minPort), '--port');
        if (p.kind === 'ok') expect(Number.isInteger(p.value) && (p.value as number) >= minPort && (p.value as number) <= 65535).toBe(true);
      }),
      { numRuns: scale(20_000, 200_000) },
    );
    stats.hostPort = kinds;
    stats.runs = ((stats.runs as number) ?? 0) + scale(20_000, 200_000);
  });

  it('parseProbePorts: two different ports in range, the defaults next to the server port, or a usage error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(digits, digits).map(([a, b]) => `${a},${b}`), hostPort), fc.integer({ min: 0, max: 65535 }), fc.constantFrom(0, 1), (v, port, minPort) => {
        const r = outcome(() => parseProbePorts(v, port, minPort), '--probe-ports');
        if (r.kind === 'ok') {
          const [a, b] = r.value as [number, number];
          for (const p of [a, b]) expect(Number.isInteger(p) && p >= minPort && p <= 65535).toBe(true);
          if (a !== 0) expect(a).not.toBe(b);
        }
      }),
      { numRuns: scale(5_000, 50_000) },
    );
    expect(parseProbePorts(undefined, 7770)).toEqual([7771, 7772]);
    expect(parseProbePorts(undefined, 65534)).toBeUndefined();
    stats.runs = ((stats.runs as number) ?? 0) + scale(5_000, 50_000);
  });

  it('parseCount: an integer within [min, max], or a usage error', () => {
    fc.assert(
      fc.property(fc.oneof(digits, fc.string({ maxLength: 12 })), fc.nat(100), fc.nat(1_000_000), (v, min, span) => {
        const r = outcome(() => parseCount(v, '--max-connections', { min, max: min + span }), '--max-connections');
        if (r.kind === 'ok') {
          const n = r.value as number;
          expect(Number.isSafeInteger(n) && n >= min && n <= min + span).toBe(true);
        }
      }),
      { numRuns: scale(10_000, 100_000) },
    );
    stats.runs = ((stats.runs as number) ?? 0) + scale(10_000, 100_000);
  });

  const size = fc.oneof(
    fc.tuple(digits, fc.constantFrom('', 'k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'b', 'kb', 'KiB', 'MB', 'x', ' ')).map(([d, u]) => d + u),
    fc.string({ maxLength: 12 }),
  );
  const duration = fc.oneof(
    fc.tuple(fc.oneof(digits, fc.constantFrom('0.5', '1.', '.5', '1.0000001', '0.0001', '1.5')), fc.constantFrom('', 'ms', 's', 'm', 'h', 'd', 'S', ' s', 'sec')).map(([d, u]) => d + u),
    fc.string({ maxLength: 12 }),
  );

  it('parseBytes / parseDuration: a non-negative number, or a usage error naming the flag', () => {
    const kinds: Record<string, number> = {};
    fc.assert(
      fc.property(size, duration, (s, d) => {
        const b = outcome(() => parseBytes(s, '--relay-max-bytes'), '--relay-max-bytes');
        if (b.kind === 'ok') expect((b.value as number) >= 0).toBe(true);
        const t = outcome(() => parseDuration(d, '--idle-timeout'), '--idle-timeout');
        if (t.kind === 'ok') expect((t.value as number) >= 0).toBe(true);
        kinds[`bytes-${b.kind}`] = (kinds[`bytes-${b.kind}`] ?? 0) + 1;
        kinds[`duration-${t.kind}`] = (kinds[`duration-${t.kind}`] ?? 0) + 1;
      }),
      { numRuns: scale(20_000, 200_000) },
    );
    stats.sizesAndDurations = kinds;
    stats.runs = ((stats.runs as number) ?? 0) + scale(20_000, 200_000);
  });

  it('parse(): any argv is parsed or refused with a usage error, never another exception', () => {
    const OPTIONS = { port: { type: 'string' }, 'no-relay': { type: 'boolean' }, secret: { type: 'string' } } as const;
    const arg = fc.oneof(
      fc.constantFrom('--port', '--port=1', '--no-relay', '--no-relay=1', '--secret', '-h', '-q', '-v', '--json', '--', '-', '--=', '---x', '-pq', '--__proto__', '--constructor', '--toString'),
      fc.string({ maxLength: 10 }),
    );
    fc.assert(
      fc.property(fc.array(arg, { maxLength: 8 }), (argv) => {
        try {
          parse(argv, OPTIONS, 'help text');
        } catch (err) {
          expect(err).toBeInstanceOf(CliError);
          expect((err as CliError).exitCode).toBe(EXIT.USAGE);
        }
      }),
      { numRuns: scale(5000, 50_000) },
    );
    stats.runs = ((stats.runs as number) ?? 0) + scale(5000, 50_000);
    record('fuzz-cli', 'cli', stats);
  });

  it('--service NAME=HOST:PORT / --map [HOST:]PORT=NAME: valid specs, or a usage error naming the flag', () => {
    const name = fc.oneof(fc.constantFrom('web', 'a', 'x'.repeat(64), 'x'.repeat(65), 'a b', 'é', '', '='), fc.string({ maxLength: 8 }));
    const item = fc.oneof(
      fc.tuple(name, fc.oneof(fc.constantFrom('=', '=='), fc.constant('')), fc.oneof(hostPort, digits)).map(([n, eq, v]) => `${n}${eq}${v}`),
      fc.tuple(fc.oneof(hostPort, digits), name).map(([v, n]) => `${v}=${n}`),
      fc.string({ maxLength: 24 }),
    );
    const flags = {
      service: { type: 'string', multiple: true },
      map: { type: 'string', multiple: true },
    } as const;
    fc.assert(
      fc.property(fc.array(item, { minLength: 1, maxLength: 3 }), fc.constantFrom('--service', '--map'), (items, flag) => {
        const got = outcome(() => {
          const s = readSettings(items.flatMap((i) => [flag, i]), [{ flags }], 'help');
          return flag === '--service' ? servicesOf(s) : mapsOf(s);
        }, flag);
        if (got.kind !== 'ok') return;
        for (const spec of got.value as { name?: string; peer?: string; to?: { port: number }; listen?: { port: number } }[]) {
          expect(spec.name ?? spec.peer).toMatch(PEER_ID_PATTERN);
          const port = (spec.to ?? spec.listen)!.port;
          expect(port).toBeGreaterThanOrEqual(flag === '--service' ? 1 : 0);
          expect(port).toBeLessThanOrEqual(65535);
        }
      }),
      { numRuns: scale(3000, 30_000) },
    );
  });

  // Fixed finding (lib/cli/args.ts, lib/cli/serve.ts): the size and duration parsers used to accept values the
  // server then refused (`--relay-max-bytes` above 2^53, `--idle-timeout 999...9h`, `--handshake-timeout 0.0001s`),
  // so `tcp-punch serve` exited 1 with the server's message instead of 2 naming the flag. Now they check the ranges.
  it('every size or duration the parsers accept is one the server accepts', () => {
    fc.assert(
      fc.property(size, duration, (s, d) => {
        const bytes = outcome(() => parseBytes(s, '--relay-max-bytes'), '--relay-max-bytes');
        if (bytes.kind === 'ok') resolveLimits({ maxBytesPerSession: bytes.value as number });
        const ms = outcome(() => parseDuration(d, '--idle-timeout'), '--idle-timeout');
        if (ms.kind === 'ok') resolveOptions({ idleTimeoutMs: ms.value as number });
      }),
      { numRuns: 5000 },
    );
  });
});
