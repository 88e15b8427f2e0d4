/**
 * Argument parsing shared by the commands: node:util parseArgs in strict mode, plus the value parsers whose
 * mistakes become usage errors (exit code 2) that name the flag and the expected form.
 */
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError, EXIT } from './errors.js';
import type { Flags } from './flags.js';
import { Logger, type Level } from './log.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command takes. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h', help: 'show this help', cliOnly: true },
  json: { type: 'boolean', help: 'log JSON lines instead of text' },
  quiet: { type: 'boolean', short: 'q', help: 'log errors only' },
  verbose: { type: 'boolean', short: 'v', help: 'log debug events too' },
} as const satisfies Flags;

/** `--config FILE`, for the commands that run a service (see config.ts). */
export const CONFIG_OPTIONS = {
  config: { type: 'string', arg: 'FILE', help: 'read settings from a TOML file; flags given here win over it', cliOnly: true },
} as const satisfies Flags;

/** The parsed flag values of a command whose own flags are `O`. */
export type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof COMMON_OPTIONS; strict: true; allowPositionals: false }>
>['values'];

/** Parses `argv` against `options` (plus the common flags); unknown flags and stray words are usage errors. */
export function parse<O extends Options>(argv: string[], options: O, help: string): Values<O> {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, strict: true, allowPositionals: false })
      .values as Values<O>;
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${help}`, EXIT.USAGE);
  }
}

/** The logger the common flags ask for. */
export function loggerFrom(values: { json?: boolean; quiet?: boolean; verbose?: boolean }): Logger {
  if (values.quiet && values.verbose) throw new CliError('--quiet and --verbose exclude each other', EXIT.USAGE);
  const level: Level = values.quiet ? 'error' : values.verbose ? 'debug' : 'info';
  return new Logger({ json: values.json ?? false, level });
}

/** A `host:port` endpoint (`[v6]:port` for IPv6). `minPort` 0 allows "any port". */
export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(value: string | undefined, flag: string, { minPort = 1, defaultHost }: { minPort?: number; defaultHost?: string } = {}): HostPort {
  if (value === undefined || value === '') throw new CliError(`${flag} is required (HOST:PORT)`, EXIT.USAGE);
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
    if (isIP(host) !== 6) throw new CliError(`${flag}: "${host}" is not an IPv6 address`, EXIT.USAGE);
  } else {
    const i = value.lastIndexOf(':');
    if (i < 0) {
      if (defaultHost === undefined || !/^\d+$/.test(value)) throw new CliError(`${flag}: expected HOST:PORT, got "${value}"`, EXIT.USAGE);
      host = defaultHost;
      portText = value;
    } else {
      host = value.slice(0, i) || (defaultHost ?? '');
      portText = value.slice(i + 1);
      if (host.includes(':')) throw new CliError(`${flag}: write IPv6 addresses as [ADDR]:PORT, got "${value}"`, EXIT.USAGE);
    }
    if (host === '') throw new CliError(`${flag}: missing host in "${value}"`, EXIT.USAGE);
    if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new CliError(`${flag}: "${host}" is not a host name or address`, EXIT.USAGE);
  }
  const port = parsePortText(portText, flag, minPort);
  return { host, port };
}

export function parsePort(value: string | undefined, flag: string, fallback: number, minPort = 1): number {
  if (value === undefined) return fallback;
  return parsePortText(value, flag, minPort);
}

/**
 * `--probe-ports A,B`: a server's two NAT probe ports. Absent: the server port + 1 and + 2 (what `serve` opens), or
 * undefined where those pass 65535. `minPort` 0 lets `serve` take ports the system picks.
 */
export function parseProbePorts(value: string | undefined, serverPort: number, minPort = 1, flag = '--probe-ports'): [number, number] | undefined {
  if (value === undefined) return serverPort + 2 <= 65535 ? [serverPort + 1, serverPort + 2] : undefined;
  const parts = value.split(',');
  if (parts.length !== 2) throw new CliError(`${flag}: expected two ports like 7771,7772, got "${value}"`, EXIT.USAGE);
  const ports = parts.map((p) => parsePortText(p, flag, minPort)) as [number, number];
  if (ports[0] === ports[1] && ports[0] !== 0) throw new CliError(`${flag}: expected two different ports`, EXIT.USAGE);
  return ports;
}

function parsePortText(text: string, flag: string, minPort: number): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= minPort && port <= 65535)) {
    throw new CliError(`${flag}: port must be a number from ${minPort} to 65535, got "${text}"`, EXIT.USAGE);
  }
  return port;
}

/** A positive integer flag (limits, counts); `undefined` when absent. */
export function parseCount(value: string | undefined, flag: string, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= min && n <= max)) throw new CliError(`${flag}: expected an integer from ${min} to ${max}, got "${value}"`, EXIT.USAGE);
  return n;
}

/** A byte size: 1000, 64k, 10M, 2G (powers of 1024), at most `max` (default 2^53 - 1). */
export function parseBytes(value: string | undefined, flag: string, { max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)([kKmMgGtT]?)[bB]?$/.exec(value);
  if (!m) throw new CliError(`${flag}: expected a size like 1048576, 64k, 10M or 2G, got "${value}"`, EXIT.USAGE);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Number(m[1]) * mult;
  if (!(n <= max)) throw new CliError(`${flag}: at most ${max} bytes, got "${value}"`, EXIT.USAGE);
  return n;
}

/**
 * A duration: 500ms, 30s, 5m, 2h, or a bare number of seconds, in ms within `min..max` (default 1 ms .. 1 day:
 * what the server's timeouts accept). A value that rounds below `min` is refused rather than silently changed.
 */
export function parseDuration(value: string | undefined, flag: string, { min = 1, max = 86_400_000 } = {}): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value);
  if (!m) throw new CliError(`${flag}: expected a duration like 500ms, 30s, 5m or 2h, got "${value}"`, EXIT.USAGE);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Math.round(Number(m[1]) * mult);
  if (!(ms >= min && ms <= max)) throw new CliError(`${flag}: must be from ${min} ms to ${max} ms, got "${value}"`, EXIT.USAGE);
  return ms;
}

/**
 * The shared secret from `--secret`, `--secret-file` or `TCP_PUNCH_SECRET`; at most one of the two settings.
 * `where` names a setting in messages (see config.ts).
 */
export function readSecret(values: { secret?: unknown; 'secret-file'?: unknown }, where: (key: string) => string = (k) => `--${k}`): string | undefined {
  const file = values['secret-file'] as string | undefined;
  let secret = values.secret as string | undefined;
  if (secret !== undefined && file !== undefined) {
    throw new CliError(`give either ${where('secret')} or ${where('secret-file')}, not both`, EXIT.USAGE);
  }
  if (file !== undefined) {
    try {
      secret = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new CliError(`${where('secret-file')}: cannot read ${file}: ${(err as Error).message}`, EXIT.USAGE);
    }
  }
  secret ??= process.env.TCP_PUNCH_SECRET;
  if (secret !== undefined && secret.length === 0) throw new CliError('the secret is empty', EXIT.USAGE);
  return secret;
}

/** Warns when the secret file can be read or written by other users than its owner (ssh's rule for keys). */
export function warnLooseSecretFile(log: Logger, values: { 'secret-file'?: unknown }, where: (key: string) => string = (k) => `--${k}`): void {
  const file = values['secret-file'] as string | undefined;
  if (file === undefined) return;
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return; // readSecret has reported it already
  }
  if ((mode & 0o077) === 0) return;
  const octal = mode.toString(8).padStart(4, '0');
  log.warn('secret-file', { file, mode: octal }, `${where('secret-file')}: ${file} is accessible to other users (mode ${octal}); chmod 600 it`);
}

export const SECRET_OPTIONS = {
  secret: { type: 'string', arg: 'S', help: "the server's shared secret (or set TCP_PUNCH_SECRET)", replaces: 'secret-file' },
  'secret-file': { type: 'string', arg: 'FILE', help: 'read the secret from FILE (keep it mode 0600)', replaces: 'secret', path: true },
} as const satisfies Flags;

/** A byte count in the notation {@link parseBytes} reads: 134217728 → "128M", 0 → "0". */
export function showBytes(n: number): string {
  for (const [unit, size] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['k', 2 ** 10]] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}

/** A duration in the notation {@link parseDuration} reads: 300000 → "5m", 1500 → "1500ms", 0 → "0". */
export function showDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
