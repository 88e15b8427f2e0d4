/**
 * A {@link Registry} in Redis, so that an open server's ids and tokens hold cluster-wide: `create` is one
 * `SET NX`, hence an id taken on one node is taken on all (`ERR_ID_TAKEN` without the holder's token).
 *
 * Records are sealed with the cluster's store key (the token is the id's credential and must not be readable by
 * whoever can read Redis) and bound to their key, so a record copied onto another id does not open. A record that
 * does not open is an error, never "free": a node with the wrong secret must not hand out ids others hold.
 *
 * Expiry: a reservation (`expiresAt` set) lives until then. An online record (`expiresAt` null) lives for
 * `onlineTtlMs` and this node refreshes it while it serves the peer, so the ids of a node that died lapse like a
 * reservation would; this node also writes its online records back when Redis comes back without them.
 */
import type { Redis } from 'ioredis';

import { TcpPunchError } from '../errors.js';
import type { IdRecord, Registry } from '../registry.js';
import { open, seal } from './crypto.js';
import type { ClusterKeyspace } from './keys.js';

/** Options of {@link RedisRegistry}. */
export interface RedisRegistryOptions {
  redis: Redis;
  keys: ClusterKeyspace;
  /** The cluster's store key (see deriveClusterKeys). */
  storeKey: Buffer;
  /** Lifetime of an online record between refreshes; default 600000 ms (the server's default id reservation). */
  onlineTtlMs?: number;
}

/** The cluster-wide {@link Registry}. */
export class RedisRegistry implements Registry {
  readonly onlineTtlMs: number;
  /** Online records this node wrote, refreshed by {@link refresh}. */
  private readonly online = new Map<string, IdRecord>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: RedisRegistryOptions) {
    this.onlineTtlMs = o.onlineTtlMs ?? 600_000;
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), Math.max(10, Math.floor(this.onlineTtlMs / 3)));
    this.timer.unref();
  }

  async get(id: string): Promise<IdRecord | undefined> {
    const key = this.o.keys.credential(id);
    const box = await this.o.redis.getBuffer(key);
    if (!box) return undefined;
    const rec = decode(open(this.o.storeKey, key, box));
    if (!rec) throw new TcpPunchError('ERR_CLUSTER_RECORD', `The record of id ${id} in Redis does not open with this cluster's secret`);
    // Redis's expiry is the one that counts (create's NX sees only it): no second check against this node's clock.
    return rec;
  }

  async create(id: string, record: IdRecord): Promise<boolean> {
    const ttl = this.ttlOf(record);
    if (ttl <= 0) return true; // already lapsed: as good as created and expired
    const ok = (await this.o.redis.set(this.o.keys.credential(id), this.encode(id, record), 'PX', ttl, 'NX')) === 'OK';
    if (ok) this.track(id, record);
    return ok;
  }

  async update(id: string, record: IdRecord): Promise<void> {
    const ttl = this.ttlOf(record);
    this.track(id, record);
    if (ttl <= 0) await this.o.redis.del(this.o.keys.credential(id));
    else await this.o.redis.set(this.o.keys.credential(id), this.encode(id, record), 'PX', ttl);
  }

  async delete(id: string): Promise<void> {
    this.online.delete(id);
    await this.o.redis.del(this.o.keys.credential(id));
  }

  /**
   * Extends the online records this node serves, and writes back any that Redis lost (a restart without
   * persistence); a record another node replaced meanwhile is left alone. Runs on a timer and on reconnect.
   */
  async refresh(): Promise<void> {
    await Promise.all(
      [...this.online].map(async ([id, rec]) => {
        const key = this.o.keys.credential(id);
        if ((await this.o.redis.pexpire(key, this.onlineTtlMs)) === 0)
          await this.o.redis.set(key, this.encode(id, rec), 'PX', this.onlineTtlMs, 'NX');
      }),
    );
  }

  /** Stops refreshing. */
  close(): void {
    clearInterval(this.timer);
  }

  private track(id: string, record: IdRecord): void {
    if (record.expiresAt === null) this.online.set(id, copy(record));
    else this.online.delete(id);
  }

  private ttlOf(record: IdRecord): number {
    return record.expiresAt === null ? this.onlineTtlMs : Math.ceil(record.expiresAt - Date.now());
  }

  private encode(id: string, record: IdRecord): Buffer {
    const json = JSON.stringify({ t: record.token && Buffer.from(record.token).toString('base64'), e: record.expiresAt });
    return seal(this.o.storeKey, this.o.keys.credential(id), Buffer.from(json));
  }
}

function decode(plain: Buffer | undefined): IdRecord | undefined {
  if (!plain) return undefined;
  try {
    const v = JSON.parse(plain.toString('utf8')) as { t: unknown; e: unknown };
    const token = typeof v.t === 'string' ? new Uint8Array(Buffer.from(v.t, 'base64')) : v.t === null ? null : undefined;
    const expiresAt = typeof v.e === 'number' || v.e === null ? v.e : undefined;
    return token === undefined || expiresAt === undefined ? undefined : { token, expiresAt };
  } catch {
    return undefined;
  }
}

function copy(r: IdRecord): IdRecord {
  return { token: r.token && Uint8Array.from(r.token), expiresAt: r.expiresAt };
}
