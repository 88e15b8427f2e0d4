/**
 * Ownership leases: which node holds the control connection of a peer id, cluster-wide.
 *
 * A lease is one Redis key, `<epoch>|<nodeId>`, that expires after `ttlMs` unless renewed. The epoch is a fencing
 * token taken from the Redis server's clock in microseconds (and at least one more than the lease it replaces), so
 * it grows across claims and survives a Redis restart that lost every key: a claim made after the restart
 * outranks any lease held before it. All changes are Lua scripts (atomic compare-and-set on the epoch):
 *
 * - claim: the peer registered here; replaces any lease (a new registration with the id's credential wins, as
 *   on one node) or, in `nx` mode, only takes a free id. The previous owner is returned so it can be told.
 * - assert (renewal and re-assertion): if the lease is still ours, extend it; if Redis lost it, write it back;
 *   if a higher epoch holds it, we lost; if a lower epoch holds it (an older lease a failover brought back),
 *   ours is the newer claim and replaces it.
 * - release: delete the lease only if it is still ours.
 *
 * Every lease is renewed every `ttlMs / 3`, in batches of one script call per 200 leases (one slot per batch is a
 * Redis Cluster requirement: group a batch by slot there), and re-asserted as soon as Redis is back. A lease
 * whose next renewal could come too late (Redis unreachable for two thirds of `ttlMs`: it would lapse before the
 * tick after) is given up: the node no longer claims an id it cannot
 * prove, emits `lost` with reason `expired` and logs it; the server then closes that peer's control connection so
 * the peer registers again (here or elsewhere) once Redis answers.
 */
import { EventEmitter } from 'node:events';

import type { Redis } from 'ioredis';

import { TcpPunchError } from '../errors.js';
import type { ClusterKeyspace } from './keys.js';
import { callScript } from './redis.js';
import type { ClusterCounters, ClusterLog } from './stats.js';

const PARSE = `
local function parse(v)
  if not v then return 0, false end
  local sep = string.find(v, '|', 1, true)
  if not sep then return 0, false end
  return tonumber(string.sub(v, 1, sep - 1)) or 0, string.sub(v, sep + 1)
end
`;

/** ARGV: nodeId, ttlMs, mode ('replace' | 'nx'). Returns {'ok', value, previous} or {'held', current}. */
const CLAIM = `${PARSE}
local cur = redis.call('GET', KEYS[1])
local curEpoch, curNode = parse(cur)
if ARGV[3] == 'nx' and cur and curNode ~= ARGV[1] then return {'held', cur} end
local t = redis.call('TIME')
local epoch = tonumber(t[1]) * 1000000 + tonumber(t[2])
if epoch <= curEpoch then epoch = curEpoch + 1 end
local val = string.format('%.0f', epoch) .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], val, 'PX', ARGV[2])
return {'ok', val, cur or ''}
`;

/**
 * Asserts a batch of leases: KEYS are lease keys, ARGV = nodeId, ttlMs, then the epoch of each key. Returns two
 * entries per key: 'ok' | 'restored' | 'won' (with the lease it replaced) | 'lost' (with the current one), and the
 * other lease or ''.
 */
const ASSERT_MANY = `${PARSE}
local node, ttl = ARGV[1], ARGV[2]
local out = {}
for i, key in ipairs(KEYS) do
  local epochStr = ARGV[i + 2]
  local mine = epochStr .. '|' .. node
  local cur = redis.call('GET', key)
  local status = 'ok'
  if cur == mine then
    redis.call('PEXPIRE', key, ttl)
  elseif not cur then
    redis.call('SET', key, mine, 'PX', ttl)
    status = 'restored'
  else
    local curEpoch, curNode = parse(cur)
    local epoch = tonumber(epochStr)
    if curEpoch > epoch or (curEpoch == epoch and curNode > node) then
      status = 'lost'
    else
      redis.call('SET', key, mine, 'PX', ttl)
      status = 'won'
    end
  end
  table.insert(out, status)
  table.insert(out, (cur ~= mine and cur) or '')
end
return out
`;

/** Leases asserted per script call: one round trip per batch, short enough not to stall Redis. */
const RENEW_BATCH = 200;

/** ARGV: nodeId, epoch. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[2] .. '|' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Who holds a lease. */
export interface LeaseHolder {
  node: string;
  /** Fencing epoch (Redis clock, µs), as a decimal string: it exceeds 2^53 only in the year 2255, but stays exact. */
  epoch: string;
}

/** Why a lease was lost. */
export type LeaseLossReason = 'stolen' | 'expired';

/** Events of {@link Leases}. */
export interface LeaseEvents {
  /** This node no longer holds the lease of `peerId`; close its control connection. */
  lost: [peerId: string, reason: LeaseLossReason, by: LeaseHolder | undefined];
  /** This node took the lease from another live holder; tell that node (it learns it at its next renewal anyway). */
  took: [peerId: string, previous: LeaseHolder, epoch: string];
}

/** Options of {@link Leases}. */
export interface LeasesOptions {
  redis: Redis;
  keys: ClusterKeyspace;
  nodeId: string;
  /** Lease lifetime; default 15000 ms. Renewed every third of it. */
  ttlMs?: number;
  counters: ClusterCounters;
  log: ClusterLog;
}

interface Held {
  epoch: string;
  /** performance.now() when the last successful claim or renewal was sent: the lease is proven until + ttl. */
  provenAt: number;
}

type Reply = [string, string?, string?];


/** The leases this node holds, kept alive in Redis. */
export class Leases extends EventEmitter<LeaseEvents> {
  readonly ttlMs: number;
  private readonly renewEveryMs: number;
  private readonly held = new Map<string, Held>();
  private readonly timer: NodeJS.Timeout;
  private renewing: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly o: LeasesOptions) {
    super();
    this.ttlMs = o.ttlMs ?? 15_000;
    o.redis.defineCommand('tpLeaseClaim', { numberOfKeys: 1, lua: CLAIM });
    o.redis.defineCommand('tpLeaseAssertMany', { lua: ASSERT_MANY });
    o.redis.defineCommand('tpLeaseRelease', { numberOfKeys: 1, lua: RELEASE });
    this.renewEveryMs = Math.max(10, Math.floor(this.ttlMs / 3));
    this.timer = setInterval(() => void this.renewAll(), this.renewEveryMs);
    this.timer.unref();
  }

  /** Ids whose lease this node holds. */
  get size(): number {
    return this.held.size;
  }

  /** The epoch of our lease on `peerId`, if we hold it. */
  epochOf(peerId: string): string | undefined {
    return this.held.get(peerId)?.epoch;
  }

  /**
   * Claims the lease of `peerId` for this node.
   * @returns our epoch and the previous holder (another node or ourselves), if the id was held.
   * @throws TcpPunchError `ERR_ID_TAKEN` in `nx` mode when another node holds it; `ERR_CLUSTER_UNAVAILABLE` when
   * Redis cannot be reached.
   */
  async claim(peerId: string, mode: 'replace' | 'nx' = 'replace'): Promise<{ epoch: string; previous: LeaseHolder | undefined }> {
    const sentAt = performance.now();
    let reply: Reply;
    try {
      reply = (await this.cmd('tpLeaseClaim', this.o.keys.lease(peerId), this.o.nodeId, this.ttlMs, mode)) as Reply;
    } catch (err) {
      this.o.counters.leases.errors++;
      throw unavailable(`Cannot claim the lease of ${peerId}`, err);
    }
    if (reply[0] === 'held') {
      throw new TcpPunchError('ERR_ID_TAKEN', `Id ${peerId} is held by node ${parseHolder(reply[1])?.node ?? '?'}`);
    }
    const mine = parseHolder(reply[1])!;
    const previous = parseHolder(reply[2]);
    this.o.counters.leases.claims++;
    this.held.set(peerId, { epoch: mine.epoch, provenAt: sentAt });
    this.o.counters.leases.held = this.held.size;
    if (previous && previous.node !== this.o.nodeId) this.emit('took', peerId, previous, mine.epoch);
    return { epoch: mine.epoch, previous };
  }

  /** Gives up our lease of `peerId` (the peer left); a lease someone else took meanwhile is left alone. */
  async release(peerId: string): Promise<void> {
    const h = this.held.get(peerId);
    if (!h) return;
    this.forget(peerId);
    await this.cmd('tpLeaseRelease', this.o.keys.lease(peerId), this.o.nodeId, h.epoch).catch(() => undefined);
  }

  /** The current holder of `peerId`'s lease, or undefined when it is free. */
  async owner(peerId: string): Promise<LeaseHolder | undefined> {
    return parseHolder((await this.o.redis.get(this.o.keys.lease(peerId))) ?? undefined);
  }

  /**
   * Another node says it claimed `peerId` with `epoch`: if that outranks our lease, we lost it. A claim that does
   * not outrank ours (a stale or replayed notice) changes nothing.
   */
  superseded(peerId: string, by: LeaseHolder): void {
    const h = this.held.get(peerId);
    if (!h || by.node === this.o.nodeId || !outranks(by.epoch, h.epoch)) return;
    this.lose(peerId, 'stolen', by);
  }

  /** Renews (re-asserts) every lease; runs on a timer and whenever the connection to Redis is back. */
  renewAll(): Promise<void> {
    this.renewing ??= this.renewPass().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /** Stops renewing; the leases lapse in Redis unless released. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  private async renewPass(): Promise<void> {
    if (this.closed) return;
    const all = [...this.held];
    const batches: (typeof all)[] = [];
    for (let i = 0; i < all.length; i += RENEW_BATCH) batches.push(all.slice(i, i + RENEW_BATCH));
    await Promise.all(batches.map((b) => this.renewBatch(b)));
  }

  private async renewBatch(batch: [string, Held][]): Promise<void> {
    const sentAt = performance.now();
    let reply: string[];
    try {
      reply = await this.cmd(
        'tpLeaseAssertMany', batch.length, ...batch.map(([id]) => this.o.keys.lease(id)), this.o.nodeId, this.ttlMs,
        ...batch.map(([, h]) => h.epoch),
      ) as string[];
    } catch {
      this.o.counters.leases.errors++;
      for (const [peerId, h] of batch)
        // Give up at the last tick before Redis would expire the lease, so that no moment exists at which Redis
        // lets another node claim the id while this one still claims it.
        if (this.held.get(peerId) === h && performance.now() - h.provenAt + this.renewEveryMs >= this.ttlMs) this.expire(peerId, h);
      return;
    }
    batch.forEach(([peerId, h], i) => {
      const status = reply[2 * i];
      const other = parseHolder(reply[2 * i + 1]);
      if (this.held.get(peerId) !== h) return; // released or re-claimed meanwhile
      if (status === 'lost') return this.lose(peerId, 'stolen', other);
      h.provenAt = sentAt;
      this.o.counters.leases.renewals++;
      if (status === 'restored') this.o.counters.leases.restored++;
      if (status === 'won' && other && other.node !== this.o.nodeId) this.emit('took', peerId, other, h.epoch);
    });
  }

  private expire(peerId: string, h: Held): void {
    const since = Math.round(performance.now() - h.provenAt);
    this.o.log('warn', `cluster: lease of ${peerId} not renewed for ${since} ms (Redis unreachable): no longer claiming it`);
    this.lose(peerId, 'expired', undefined);
  }

  private lose(peerId: string, reason: LeaseLossReason, by: LeaseHolder | undefined): void {
    this.forget(peerId);
    if (reason === 'stolen') this.o.counters.leases.lostStolen++;
    else this.o.counters.leases.lostExpired++;
    this.emit('lost', peerId, reason, by);
  }

  private forget(peerId: string): void {
    this.held.delete(peerId);
    this.o.counters.leases.held = this.held.size;
  }

  private cmd(name: string, ...args: (string | number)[]): Promise<unknown> {
    return callScript(this.o.redis, name, ...args);
  }
}

/** Parses `<epoch>|<nodeId>`. */
export function parseHolder(value: string | undefined | null): LeaseHolder | undefined {
  if (!value) return undefined;
  const sep = value.indexOf('|');
  if (sep <= 0) return undefined;
  return { epoch: value.slice(0, sep), node: value.slice(sep + 1) };
}

/** True when epoch `a` is greater than epoch `b` (decimal strings of non-negative integers). */
export function outranks(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}

function unavailable(what: string, cause: unknown): TcpPunchError {
  return new TcpPunchError('ERR_CLUSTER_UNAVAILABLE', `${what}: Redis is unreachable (${String((cause as Error)?.message ?? cause)})`, { cause });
}
