/**
 * The CLI's config file (lib/cli/config.ts) and the service lists built on it (expose's services, connect's
 * maps): flags win over the file; an unknown key, a wrong type, a duplicate name, an unreadable or invalid file is
 * a usage error naming the file, the key and the value. Property tests: any TOML document is accepted or refused
 * with such an error, never another exception; every size and duration the help prints parses back to itself.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';

import { COMMON_OPTIONS, CONFIG_OPTIONS, SECRET_OPTIONS, parseBytes, parseDuration, readSecret, showBytes, showDuration } from '../lib/cli/args.js';
import { readSettings } from '../lib/cli/config.js';
import { mapsOf } from '../lib/cli/connect.js';
import { CliError, EXIT } from '../lib/cli/errors.js';
import { servicesOf } from '../lib/cli/expose.js';
import type { FlagSection } from '../lib/cli/flags.js';

const dir = mkdtempSync(join(tmpdir(), 'tcp-punch-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string): string {
  const path = join(dir, `c${n++}.toml`);
  writeFileSync(path, text);
  return path;
}

const SECTIONS: FlagSection[] = [
  {
    flags: {
      port: { type: 'string' },
      'no-relay': { type: 'boolean' },
      service: { type: 'string', multiple: true },
      id: { type: 'string' },
      to: { type: 'string' },
      peer: { type: 'string' },
      listen: { type: 'string' },
      map: { type: 'string', multiple: true },
      strategy: { type: 'string' },
      pool: { type: 'string' },
      ...CONFIG_OPTIONS,
    },
  },
  { flags: COMMON_OPTIONS },
];
const TABLES = {
  service: { name: { type: 'string' }, to: { type: 'string' } },
  map: { peer: { type: 'string' }, listen: { type: 'string' }, strategy: { type: 'string' }, pool: { type: 'string' } },
} as const;

const settings = (argv: string[]) => readSettings(argv, SECTIONS, 'help', TABLES);

/** The usage error `fn` throws; fails if it throws anything else or nothing. */
function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(EXIT.USAGE);
    return (err as Error).message;
  }
  throw new Error('expected a usage error');
}

describe('config file', () => {
  it('reads flags from the file; the command line wins; messages name where a value came from', () => {
    const path = file('port = 7000\nno-relay = true\njson = true\n');
    const s = settings(['--config', path, '--port', '7001']);
    expect(s.values).toMatchObject({ port: '7001', 'no-relay': true, json: true });
    expect(s.where('port')).toBe('--port');
    expect(s.where('no-relay')).toBe(`${path}: no-relay`);
    expect(s.where('id')).toBe('--id'); // in neither: named as the flag that would give it
  });

  it('a secret on the command line replaces the file\'s secret-file and the other way round; both in one place is an error; a relative secret-file is next to the file', () => {
    const both = file('secret = "a"\nsecret-file = "/x"\n');
    const flags: FlagSection[] = [{ flags: { ...SECRET_OPTIONS, ...CONFIG_OPTIONS } }];
    expect(readSettings(['--config', file('secret-file = "/x"\n'), '--secret', 's'], flags, 'help').values).toEqual({ config: expect.any(String), secret: 's' });
    expect(readSettings(['--config', file('secret = "a"\n'), '--secret-file', '/y'], flags, 'help').values).toMatchObject({ 'secret-file': '/y' });
    expect(readSettings(['--config', file('secret-file = "s.txt"\n')], flags, 'help').values['secret-file']).toBe(join(dir, 's.txt'));
    expect(readSettings(['--config', file('secret-file = "/etc/s"\n')], flags, 'help').values['secret-file']).toBe('/etc/s');
    const s = readSettings(['--config', both], flags, 'help');
    expect(usageError(() => readSecret(s.values, s.where))).toMatch(/give either .*: secret or .*: secret-file, not both/);
  });

  it('refuses an unknown key, a wrong type, a bad table, naming the file, key and value', () => {
    expect(usageError(() => settings(['--config', file('prot = 7000\n')]))).toMatch(/c\d+\.toml: prot: unknown key/);
    expect(usageError(() => settings(['--config', file('port = true\n')]))).toMatch(/c\d+\.toml: port: expected a string or a number, got true/);
    expect(usageError(() => settings(['--config', file('no-relay = "yes"\n')]))).toMatch(/no-relay: expected true or false, got "yes"/);
    expect(usageError(() => settings(['--config', file('port = [1, 2]\n')]))).toMatch(/port: expected a string or a number, got a list \[1, 2\]/);
    expect(usageError(() => settings(['--config', file('service = "web=1.2.3.4:80"\n')]))).toMatch(/service: expected tables written \[\[service\]\], got "web=/);
    expect(usageError(() => settings(['--config', file('[[service]]\nname = "w"\nport = 1\n')]))).toMatch(/service\[0\]\.port: unknown key/);
    expect(usageError(() => settings(['--config', file('config = "other.toml"\n')]))).toMatch(/config: unknown key/);
    expect(usageError(() => settings(['--config', file('help = true\n')]))).toMatch(/help: unknown key/);
  });

  it('refuses an unreadable path and invalid TOML, naming the file', () => {
    expect(usageError(() => settings(['--config', join(dir, 'missing.toml')]))).toMatch(/--config: cannot read .*missing\.toml/);
    expect(usageError(() => settings(['--config', dir]))).toMatch(/--config: cannot read/);
    const locked = file('port = 1\n');
    chmodSync(locked, 0o000);
    if (process.getuid?.() !== 0) expect(usageError(() => settings(['--config', locked]))).toMatch(/cannot read/);
    expect(usageError(() => settings(['--config', file('port = \n')]))).toMatch(/c\d+\.toml: not valid TOML \(line 1/);
    expect(usageError(() => settings(['--config', file('port = 1\nport = 2\n')]))).toMatch(/not valid TOML \(line 2/);
  });
});

describe('expose services', () => {
  it('combines --id/--to, --service and [[service]]; the command line replaces a service of the file', () => {
    const path = file('[[service]]\nname = "web"\nto = "127.0.0.1:80"\n[[service]]\nname = "ssh"\nto = "127.0.0.1:22"\n');
    const s = settings(['--config', path, '--service', 'web=127.0.0.1:8080', '--id', 'db', '--to', '127.0.0.1:5432']);
    expect(servicesOf(s)).toEqual([
      { name: 'web', to: { host: '127.0.0.1', port: 8080 } },
      { name: 'ssh', to: { host: '127.0.0.1', port: 22 } },
      { name: 'db', to: { host: '127.0.0.1', port: 5432 } },
    ]);
  });

  it('refuses a duplicate name, a bad name, a missing part, naming where', () => {
    const dup = file('[[service]]\nname = "web"\nto = "127.0.0.1:80"\n[[service]]\nname = "web"\nto = "127.0.0.1:81"\n');
    expect(usageError(() => servicesOf(settings(['--config', dup])))).toMatch(/service\[1\]\.name: duplicate service name "web" \(also in .*service\[0\]\.name\)/);
    expect(usageError(() => servicesOf(settings(['--service', 'a=127.0.0.1:1', '--service', 'a=127.0.0.1:2'])))).toMatch(/--service a=127.0.0.1:2: duplicate service name "a"/);
    expect(usageError(() => servicesOf(settings(['--service', 'a b=127.0.0.1:1'])))).toMatch(/--service: "a b" is not a name/);
    expect(usageError(() => servicesOf(settings(['--service', 'web'])))).toMatch(/--service: expected NAME=HOST:PORT, got "web"/);
    expect(usageError(() => servicesOf(settings(['--service', 'web=nope'])))).toMatch(/--service web: expected HOST:PORT, got "nope"/);
    expect(usageError(() => servicesOf(settings(['--id', 'x'])))).toMatch(/--id needs --to/);
    expect(usageError(() => servicesOf(settings([])))).toMatch(/nothing to expose/);
    const noTo = file('[[service]]\nname = "web"\n');
    expect(usageError(() => servicesOf(settings(['--config', noTo])))).toMatch(/service\[0\]\.to is required/);
  });
});

describe('connect maps', () => {
  it('combines --peer/--listen, --map and [[map]], each map with its own strategy and pool', () => {
    const path = file('strategy = "relay"\n[[map]]\nlisten = "127.0.0.1:9001"\npeer = "web"\npool = 0\n[[map]]\nlisten = "9002"\npeer = "ssh"\nstrategy = "direct"\n');
    const s = settings(['--config', path, '--map', '9003=db', '--peer', 'x', '--listen', '127.0.0.1:0']);
    expect(mapsOf(s)).toEqual([
      { peer: 'web', listen: { host: '127.0.0.1', port: 9001 }, strategy: 'relay', poolSize: 0 },
      { peer: 'ssh', listen: { host: '127.0.0.1', port: 9002 }, strategy: 'direct', poolSize: 2 },
      { peer: 'x', listen: { host: '127.0.0.1', port: 0 }, strategy: 'relay', poolSize: 2 },
      { peer: 'db', listen: { host: '127.0.0.1', port: 9003 }, strategy: 'relay', poolSize: 2 },
    ]);
  });

  it('refuses a local address mapped twice, a bad strategy or pool, naming where', () => {
    expect(usageError(() => mapsOf(settings(['--map', '9000=a', '--map', '127.0.0.1:9000=b'])))).toMatch(/127.0.0.1:9000 is mapped twice/);
    const bad = file('[[map]]\nlisten = "9000"\npeer = "a"\nstrategy = "fast"\n');
    expect(usageError(() => mapsOf(settings(['--config', bad])))).toMatch(/map\[0\]\.strategy must be one of .*got "fast"/);
    const pool = file('[[map]]\nlisten = "9000"\npeer = "a"\npool = 99\n');
    expect(usageError(() => mapsOf(settings(['--config', pool])))).toMatch(/map\[0\]\.pool: expected an integer from 0 to 32, got "99"/);
    expect(usageError(() => mapsOf(settings([])))).toMatch(/--peer is required/);
  });
});

describe('property: config files and notations', () => {
  const keys = fc.constantFrom('port', 'no-relay', 'json', 'service', 'map', 'strategy', 'pool', 'id', 'bogus', 'name', 'to', '__proto__', 'constructor');
  const scalar = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.double(), fc.boolean(), fc.constantFrom('127.0.0.1:80', '9000', 'web', 'relay'));
  const table = fc.dictionary(keys, scalar, { maxKeys: 4 });
  const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }), fc.array(table, { minLength: 1, maxLength: 3 }), table);
  const doc = fc.dictionary(keys, value, { maxKeys: 6 });

  it('any TOML document gives settings and services, or a usage error naming the file; never another exception', () => {
    let accepted = 0;
    fc.assert(
      fc.property(doc, (d) => {
        let text: string;
        try {
          text = stringify(d);
        } catch {
          return; // not representable in TOML (e.g. NaN in some positions)
        }
        const path = file(text);
        try {
          const s = settings(['--config', path]);
          try {
            servicesOf(s);
            mapsOf(s);
          } catch (err) {
            expect(err).toBeInstanceOf(CliError);
          }
          accepted++;
        } catch (err) {
          expect(err).toBeInstanceOf(CliError);
          expect((err as CliError).exitCode).toBe(EXIT.USAGE);
          expect((err as Error).message).toContain(path);
        }
      }),
      { numRuns: 300 },
    );
    expect(accepted).toBeGreaterThan(0);
  });

  it('every size and duration the help shows parses back to the same value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 16 }), (b, ms, k) => {
        expect(parseBytes(showBytes(b), '--x')).toBe(b);
        const round = Math.min(b, 2 ** 20) * 2 ** 10 * (k % 3 === 0 ? 1024 : 1);
        if (round <= Number.MAX_SAFE_INTEGER) expect(parseBytes(showBytes(round), '--x')).toBe(round);
        expect(parseDuration(showDuration(ms), '--x', { min: 0, max: 2 ** 31 - 1 })).toBe(ms);
        expect(parseDuration(showDuration((ms % 1000) * 60_000), '--x', { min: 0, max: 2 ** 31 - 1 })).toBe((ms % 1000) * 60_000);
      }),
      { numRuns: 2000 },
    );
    expect([showBytes(128 * 2 ** 20), showDuration(15 * 60_000), showDuration(5000), showDuration(1500)]).toEqual(['128M', '15m', '5s', '1500ms']);
  });
});
