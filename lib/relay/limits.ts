/**
 * The relay's limits: their defaults by mode (open, or with a secret), their validation, and the per-key counters
 * they are checked with.
 *
 * File descriptors bound a relay process before anything else does: each relayed session holds two sockets, the
 * native pump's pipes take two more each (64 by default), and on Linux a process may not raise its open-file limit
 * past the hard limit (20,000 on the reference machine). The default of 4,096 sessions leaves room for the
 * rendezvous server's own connections in the same process.
 */
import { validateInteger } from '../endpoint.js';
import { invalidArgType } from '../errors.js';

/** Limits of a relay; 0 disables `maxBytesPerSession`, `maxDurationMs` and `idleTimeoutMs`. */
export interface RelayLimits {
  /** Sessions at once, waiting for their second side or relaying; default 4096. */
  maxSessions: number;
  /** Bytes one session may relay, both directions together; default 128 MiB on an open server, none with a secret. */
  maxBytesPerSession: number;
  /** How long one session may last, in ms; default 15 minutes on an open server, none with a secret. */
  maxDurationMs: number;
  /** How long a session may go without moving a byte either way, in ms; default 5 minutes. */
  idleTimeoutMs: number;
  /** Sessions one peer id may take part in at once; default 8. */
  maxSessionsPerPeer: number;
  /** Relay connections one IP address may hold at once (waiting or relaying); default 32. */
  maxSessionsPerIp: number;
  /** How long the first side waits for the second, in ms; default 30000 (RFC 6062's ConnectionBind window). */
  joinTimeoutMs: number;
}

/**
 * Who a relay serves: `open`, anyone who registers a free name on an open server, so each session is capped; or
 * `secret`, only peers that hold the server's shared secret, whose sessions carry their owners' own traffic and
 * so have no byte or duration cap (the idle limit still frees sessions whose peers vanished).
 */
export type RelayMode = 'open' | 'secret';

/** Defaults suited to a public (open) server; also what a RelayService uses when given no defaults. */
export const RELAY_DEFAULTS: Readonly<RelayLimits> = Object.freeze({
  maxSessions: 4096,
  maxBytesPerSession: 128 * 1024 * 1024,
  maxDurationMs: 15 * 60 * 1000,
  idleTimeoutMs: 5 * 60 * 1000,
  maxSessionsPerPeer: 8,
  maxSessionsPerIp: 32,
  joinTimeoutMs: 30_000,
});

const SECRET_DEFAULTS: Readonly<RelayLimits> = Object.freeze({ ...RELAY_DEFAULTS, maxBytesPerSession: 0, maxDurationMs: 0 });

/** The default limits of a relay in `mode`: the one place that decides what a server with a secret relays. */
export function relayDefaults(mode: RelayMode): Readonly<RelayLimits> {
  return mode === 'secret' ? SECRET_DEFAULTS : RELAY_DEFAULTS;
}

/** The accepted range of each limit, inclusive. */
export const RELAY_RANGES: Readonly<Record<keyof RelayLimits, readonly [number, number]>> = Object.freeze({
  maxSessions: [1, 1_000_000],
  maxBytesPerSession: [0, Number.MAX_SAFE_INTEGER],
  maxDurationMs: [0, 2 ** 31 - 1],
  idleTimeoutMs: [0, 2 ** 31 - 1],
  maxSessionsPerPeer: [1, 1_000_000],
  maxSessionsPerIp: [1, 1_000_000],
  joinTimeoutMs: [1, 2 ** 31 - 1],
});

/** Validates partial limits and fills in `defaults` (default {@link RELAY_DEFAULTS}). */
export function resolveLimits(limits: Partial<RelayLimits> = {}, defaults: Readonly<RelayLimits> = RELAY_DEFAULTS): RelayLimits {
  if (typeof limits !== 'object' || limits === null) throw invalidArgType('options.limits', 'an object', limits);
  const out = { ...defaults, ...limits };
  for (const key of Object.keys(RELAY_RANGES) as (keyof RelayLimits)[]) {
    const [min, max] = RELAY_RANGES[key];
    validateInteger(out[key], `options.limits.${key}`, min, max);
  }
  return out;
}

/** Counts per key; keys at zero are dropped, so memory follows what is in use. */
export class Counter {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string): void {
    this.counts.set(key, this.get(key) + 1);
  }

  remove(key: string): void {
    const n = this.get(key) - 1;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
  }

  get size(): number {
    return this.counts.size;
  }
}

/** Remembers ended or refused session ids until their tokens expire, so a late second side learns why. */
export class Tombstones {
  private readonly entries = new Map<string, { code: string; exp: number }>();

  constructor(private readonly max = 16_384) {}

  set(sid: string, code: string, exp: number, now: number): void {
    for (const [key, e] of this.entries) {
      if (e.exp > now && this.entries.size < this.max) break;
      this.entries.delete(key);
    }
    this.entries.delete(sid);
    this.entries.set(sid, { code, exp });
  }

  get(sid: string, now: number): string | undefined {
    const e = this.entries.get(sid);
    return e && e.exp > now ? e.code : undefined;
  }
}
