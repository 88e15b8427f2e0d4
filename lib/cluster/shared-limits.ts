/**
 * Limits that hold cluster-wide: relayed sessions per peer id and per IP address (concurrency), and fixed-window
 * rates (new connections per IP).
 *
 * Concurrency is a sorted set per limited key whose members are the holders (`<nodeId>/<holder>`) and whose scores
 * are each holder's expiry on the Redis clock. Taking a slot is one script: drop expired holders, refuse when the
 * set is full, else add. Holders are renewed while they last and removed when they end, and a node that dies
 * leaves slots that lapse after `ttlMs`, so a crash never leaks capacity for longer than that.
 *
 * When Redis cannot be reached the answer is `undefined` (unknown): the caller keeps enforcing its own per-node
 * limits and admits the session, so a Redis outage does not stop relaying on the nodes that are up.
 */
import type { Redis } from 'ioredis';

import type { ClusterKeyspace } from './keys.js';
import { LUA_NOW_MS, callScript } from './redis.js';

/** ARGV: member, limit, ttlMs. Returns 1 (taken or renewed) or 0 (full). */
const TAKE = `
${LUA_NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** ARGV: member, ttlMs. Extends a holder's slot, or writes it back when Redis lost it (a restart). */
const RENEW = `
${LUA_NOW_MS}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

/** Options of {@link SharedLimits}. */
export interface SharedLimitsOptions {
  redis: Redis;
  keys: ClusterKeyspace;
  nodeId: string;
  /** How long a slot outlives its last renewal; default 30000 ms. Renewed every third of it. */
  ttlMs?: number;
}

/** Cluster-wide concurrency slots and rate windows. */
export class SharedLimits {
  readonly ttlMs: number;
  /** Slot key -> members this node holds in it. */
  private readonly held = new Map<string, Set<string>>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: SharedLimitsOptions) {
    this.ttlMs = o.ttlMs ?? 30_000;
    o.redis.defineCommand('tpSlotTake', { numberOfKeys: 1, lua: TAKE });
    o.redis.defineCommand('tpSlotRenew', { numberOfKeys: 1, lua: RENEW });
    this.timer = setInterval(() => void this.renewAll(), Math.max(10, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  /**
   * Takes one of `limit` slots of `kind`/`key` (e.g. `relay-ip`/`203.0.113.7`) for `holder` (e.g. a relay session
   * id and side). True when taken, false when all are held, undefined when Redis could not answer.
   */
  async take(kind: string, key: string, holder: string, limit: number): Promise<boolean | undefined> {
    const k = this.o.keys.slots(kind, key);
    const member = `${this.o.nodeId}/${holder}`;
    let ok: number;
    try {
      ok = await callScript<number>(this.o.redis, 'tpSlotTake', k, member, limit, this.ttlMs);
    } catch {
      return undefined;
    }
    if (ok === 1) {
      let set = this.held.get(k);
      if (!set) this.held.set(k, (set = new Set()));
      set.add(member);
    }
    return ok === 1;
  }

  /** Gives a slot back. */
  async release(kind: string, key: string, holder: string): Promise<void> {
    const k = this.o.keys.slots(kind, key);
    const member = `${this.o.nodeId}/${holder}`;
    const set = this.held.get(k);
    set?.delete(member);
    if (set?.size === 0) this.held.delete(k);
    await this.o.redis.zrem(k, member).catch(() => undefined);
  }

  /** Slots of `kind`/`key` held cluster-wide now (expired holders not counted). */
  async count(kind: string, key: string): Promise<number> {
    const t = await this.o.redis.time();
    const now = Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000);
    return this.o.redis.zcount(this.o.keys.slots(kind, key), `(${now}`, '+inf');
  }

  /**
   * Counts one event of `kind`/`key` in the current window of `windowMs` and returns the count so far in it
   * (compare with the allowed rate); undefined when Redis could not answer.
   */
  async hit(kind: string, key: string, windowMs: number): Promise<number | undefined> {
    const k = this.o.keys.rate(kind, key, Math.floor(Date.now() / windowMs));
    try {
      const [[, n]] = (await this.o.redis.multi().incr(k).pexpire(k, windowMs * 2).exec()) as [[unknown, number]];
      return n;
    } catch {
      return undefined;
    }
  }

  /** Renews every slot this node holds (runs on a timer and on reconnect). */
  async renewAll(): Promise<void> {
    await Promise.all(
      [...this.held].flatMap(([k, set]) =>
        [...set].map((m) => callScript(this.o.redis, 'tpSlotRenew', k, m, this.ttlMs).catch(() => undefined)),
      ),
    );
  }

  /** Stops renewing (the slots lapse). */
  close(): void {
    clearInterval(this.timer);
  }
}
