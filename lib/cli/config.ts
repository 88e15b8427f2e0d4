/**
 * The config file of `serve`, `expose` and `connect` (`--config FILE`): TOML whose top-level keys are the command's
 * flag names without the dashes (`port = 7770`, `secret-file = "/etc/tcp-punch/secret"`, `no-probe = true`), plus
 * arrays of tables for repeated records (`[[service]]` with `name` and `to`). Flags given on the command line win
 * over the file (and `--secret` replaces the file's `secret-file`, and the other way round). A relative path in
 * the file (`secret-file`) is taken relative to the file's folder.
 *
 * Everything is checked before the command starts anything: a file that cannot be read or parsed, an unknown key,
 * a value of the wrong type is a usage error (exit 2) naming the file, the key and the value; the values then go
 * through the same parsers as flags, whose messages name `FILE: key` instead of `--flag`.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CliError, EXIT } from './errors.js';
import { parse } from './args.js';
import { allFlags, type FlagSection, type Flags } from './flags.js';

/** A flag's value as parseArgs gives it. */
export type FlagValue = string | boolean | string[];
export type FlagValues = Record<string, FlagValue | undefined>;

/** Values from one source (the command line over the file, or one table entry), and how to name their keys. */
export interface Settings {
  values: FlagValues;
  /** `FILE: key` for a value from the config file, else `--key`. */
  where(key: string): string;
}

/** A command's settings, and the entries of each of its config tables. */
export interface CommandSettings extends Settings {
  tables: Record<string, Settings[]>;
}

/**
 * Merges the command line's `argv` values over the config file at `path` (if any). `tables` names the arrays of
 * tables the file may hold for this command, with the keys each entry may have.
 * @throws CliError (exit 2) for an unreadable or invalid file, an unknown key, a value of the wrong type.
 */
export function loadSettings(argv: FlagValues, flags: Flags, path: string | undefined, tables: Record<string, Flags> = {}): CommandSettings {
  const fromArgv = (key: string): boolean => argv[key] !== undefined;
  if (path === undefined) return { values: { ...argv }, where: (key) => `--${key}`, tables: {} };
  const doc = readConfigFile(path);
  const fileValues: FlagValues = {};
  const fileTables: Record<string, Settings[]> = {};
  for (const [key, value] of Object.entries(doc)) {
    const table = Object.hasOwn(tables, key) ? tables[key]! : undefined;
    if (table) {
      if (!Array.isArray(value) || !value.every(isTable))
        throw new CliError(`${path}: ${key}: expected tables written [[${key}]], got ${show(value)}`, EXIT.USAGE);
      fileTables[key] = value.map((entry, i) => {
        const label = `${path}: ${key}[${i}]`;
        const where = (k: string): string => `${label}.${k}`;
        return { values: convertTable(entry, table, where), where };
      });
      continue;
    }
    const converted = convertTable({ [key]: value }, flags, (k) => `${path}: ${k}`)[key];
    fileValues[key] = flags[key]!.path && typeof converted === 'string' ? resolve(dirname(path), converted) : converted;
  }
  const values: FlagValues = { ...fileValues };
  for (const [key, value] of Object.entries(argv)) {
    if (value === undefined) continue;
    values[key] = value;
    const replaced = Object.hasOwn(flags, key) ? flags[key]!.replaces : undefined;
    if (replaced !== undefined && !fromArgv(replaced)) delete values[replaced];
  }
  // A key from neither place is named as its flag: that is where a missing value is most easily given.
  return { values, where: (key) => (!fromArgv(key) && values[key] !== undefined ? `${path}: ${key}` : `--${key}`), tables: fileTables };
}

/** Reads and parses a TOML file; every failure is a usage error naming the file. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`--config: cannot read ${path}: ${(err as Error).message}`, EXIT.USAGE, { cause: err });
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const e = err as { line?: number; column?: number; message: string };
    const where = e.line ? ` (line ${e.line}, column ${e.column})` : '';
    throw new CliError(`${path}: not valid TOML${where}: ${e.message.split('\n')[0]}`, EXIT.USAGE, { cause: err });
  }
}

/** Checks each key of `table` against `flags` and converts its value to what parseArgs would have given. */
function convertTable(table: Record<string, unknown>, flags: Flags, where: (key: string) => string): FlagValues {
  const out: FlagValues = {};
  for (const [key, value] of Object.entries(table)) {
    const name = where(key);
    const flag = Object.hasOwn(flags, key) ? flags[key] : undefined;
    if (!flag || flag.cliOnly) {
      const known = Object.keys(flags).filter((k) => !flags[k]!.cliOnly);
      throw new CliError(`${name}: unknown key (known keys: ${known.join(', ')})`, EXIT.USAGE);
    }
    if (flag.type === 'boolean') {
      if (typeof value !== 'boolean') throw new CliError(`${name}: expected true or false, got ${show(value)}`, EXIT.USAGE);
      out[key] = value;
    } else if (flag.multiple) {
      const list = Array.isArray(value) ? value : [value];
      out[key] = list.map((v) => scalar(v, name, 'a string or a list of strings'));
    } else {
      out[key] = scalar(value, name, 'a string or a number');
    }
  }
  return out;
}

function scalar(value: unknown, name: string, expected: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isFinite(value))) return String(value);
  throw new CliError(`${name}: expected ${expected}, got ${show(value)}`, EXIT.USAGE);
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** A config value as a message shows it. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `a list [${value.map(show).join(', ')}]`.slice(0, 80);
  if (value instanceof Date) return `the date ${value.toISOString()}`;
  if (typeof value === 'object' && value !== null) return 'a table';
  return String(value);
}

/**
 * Parses a command's flags (`sections`, with `--config`) and merges them over its config file: what every command
 * that can run from a file starts with.
 */
export function readSettings(argv: string[], sections: FlagSection[], help: string, tables: Record<string, Flags> = {}): CommandSettings {
  const flags = allFlags(sections);
  const values = parse(argv, flags, help) as FlagValues;
  return loadSettings(values, flags, values.config as string | undefined, tables);
}
