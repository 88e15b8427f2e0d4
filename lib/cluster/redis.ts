/**
 * Connections to the cluster's Redis.
 *
 * ioredis reconnects by itself; what this module decides is how a node behaves meanwhile: commands fail at once
 * while the connection is down (no offline queue: a lease renewal queued for minutes and sent late would prove
 * nothing), every command has a timeout, and the first connection must succeed within `connectTimeoutMs` or
 * start-up fails with `ERR_CLUSTER_UNAVAILABLE` (the CLI maps it to exit code 3).
 */
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';

import { TcpPunchError, invalidArgType } from '../errors.js';

/**
 * Lua that sets `now` to the Redis server's clock in ms: scripts that expire things use Redis's clock, never the
 * nodes' (which may disagree).
 */
export const LUA_NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** Where the cluster's Redis is: a `redis://[:password@]host:port[/db]` URL, or ioredis options (Sentinel...). */
export type RedisTarget = string | RedisOptions;

/** Options for {@link connectRedis}. */
export interface ConnectRedisOptions {
  /** How long the first connection may take; default 5000 ms. */
  connectTimeoutMs?: number;
  /** Per-command timeout; default 2000 ms. */
  commandTimeoutMs?: number;
  /** Connection name shown by `CLIENT LIST`. */
  name?: string;
  /** Batch the commands of one tick into one write (default true; off for a subscriber connection). */
  autoPipelining?: boolean;
}

/** Validates a {@link RedisTarget} (the option name is for the error message). */
export function validateRedisTarget(target: unknown, name = 'options.cluster.redis'): asserts target is RedisTarget {
  if (typeof target === 'string') {
    let url: URL;
    // The value goes into the message redacted: a mistyped URL may still carry a password.
    try {
      url = new URL(target);
    } catch {
      throw invalidArgType(name, 'a redis:// or rediss:// URL', redactRedis(target));
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw invalidArgType(name, 'a redis:// or rediss:// URL', redactRedis(target));
    return;
  }
  if (typeof target !== 'object' || target === null) throw invalidArgType(name, 'a redis:// URL or ioredis options', target);
}

/** A Redis URL with its password replaced, for logs. */
export function redactRedis(target: RedisTarget): string {
  if (typeof target !== 'string') return '<redis options>';
  try {
    const url = new URL(target);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<redis>';
  }
}

/**
 * Opens one connection and resolves once it is ready.
 * @throws TcpPunchError `ERR_CLUSTER_UNAVAILABLE` when Redis does not answer in time.
 */
export async function connectRedis(target: RedisTarget, options: ConnectRedisOptions = {}): Promise<Redis> {
  validateRedisTarget(target);
  const { connectTimeoutMs = 5000, commandTimeoutMs = 2000, name, autoPipelining = true } = options;
  const common: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: autoPipelining,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.min(connectTimeoutMs, 10_000),
    // Keep trying forever, at most once a second: a node outlives a Redis restart.
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
    ...(name ? { connectionName: name } : {}),
  };
  const redis = typeof target === 'string' ? new Redis(target, common) : new Redis({ ...common, ...target, lazyConnect: true });
  // Errors surface through commands and the 'ready'/'close' events; an unhandled 'error' would crash the process.
  redis.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve) => {
        redis.once('ready', resolve);
        redis.connect().catch(() => undefined);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TcpPunchError('ERR_CLUSTER_UNAVAILABLE', `Cannot reach Redis at ${redactRedis(target)} within ${connectTimeoutMs} ms`)),
          connectTimeoutMs,
        );
      }),
    ]);
  } catch (err) {
    redis.disconnect();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return redis;
}

/** One PING's round trip in ms. */
export async function measureRtt(redis: Redis): Promise<number> {
  const t0 = performance.now();
  await redis.ping();
  return performance.now() - t0;
}

/** Calls a script registered with `defineCommand` (ioredis adds it as a method the types do not know). */
export function callScript<T>(redis: Redis, name: string, ...args: (string | number | Buffer)[]): Promise<T> {
  const fn = (redis as unknown as Record<string, (...a: unknown[]) => Promise<T>>)[name];
  if (typeof fn !== 'function') throw new TypeError(`Redis script ${name} is not defined`);
  return fn.apply(redis, args);
}
