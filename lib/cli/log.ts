/**
 * The CLI's log: one line per event, human-readable by default, JSON lines with `--json`.
 * `--quiet` keeps errors only; `--verbose` adds debug events (every attempt, every pool refill).
 */
import { EOL } from 'node:os';
import type { Writable } from 'node:stream';

export type Level = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  json?: boolean;
  level?: Level;
  stream?: Writable;
}

export class Logger {
  readonly json: boolean;
  readonly level: Level;
  readonly #stream: Writable;

  constructor({ json = false, level = 'info', stream = process.stderr }: LoggerOptions = {}) {
    this.json = json;
    this.level = level;
    this.#stream = stream;
  }

  /** Logs `event` with its fields; `text` is the human line (defaults to the event name). */
  log(level: Level, event: string, fields: Record<string, unknown> = {}, text?: string): void {
    if (RANK[level] > RANK[this.level]) return;
    const line = this.json
      ? JSON.stringify({ time: new Date().toISOString(), level, event, ...fields }, jsonSafe)
      : `${new Date().toISOString().slice(11, 23)} ${level === 'info' ? '' : `${level.toUpperCase()} `}${text ?? event}`;
    this.#stream.write(line + EOL);
  }

  error(event: string, fields?: Record<string, unknown>, text?: string): void {
    this.log('error', event, fields, text);
  }
  warn(event: string, fields?: Record<string, unknown>, text?: string): void {
    this.log('warn', event, fields, text);
  }
  info(event: string, fields?: Record<string, unknown>, text?: string): void {
    this.log('info', event, fields, text);
  }
  debug(event: string, fields?: Record<string, unknown>, text?: string): void {
    this.log('debug', event, fields, text);
  }
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { message: value.message, code: (value as { code?: unknown }).code };
  return value;
}

/** 1234567 → "1.2 MB". */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v.toFixed(1)} ${units[i]}`;
}

/** 1234 → "1.23 s", 87 → "87 ms". */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
