/**
 * `serve`'s cluster flags, checked in one place: `--cluster redis://HOST:PORT` (or the `TCP_PUNCH_CLUSTER`
 * environment variable; the flag wins), `--node-id ID`, `--advertise HOST:PORT`. The result is the `cluster`
 * option of startServer; errors name the flag (the CLI exits 2 on them).
 */
import { invalidArgValue } from '../errors.js';
import { NODE_ID_PATTERN, validateAdvertise } from './cluster.js';
import { validateRedisTarget } from './redis.js';

/** The environment variable that stands in for `--cluster`. */
export const CLUSTER_ENV = 'TCP_PUNCH_CLUSTER';

/** The flags as parsed (strings, or absent). */
export interface ClusterFlags {
  cluster?: string | undefined;
  nodeId?: string | undefined;
  advertise?: string | undefined;
}

/** The `cluster` option of startServer, or undefined when neither `--cluster` nor the environment asks for one. */
export function clusterFromFlags(
  flags: ClusterFlags,
  env: Record<string, string | undefined> = process.env,
): { redis: string; nodeId?: string; advertise?: string } | undefined {
  const fromEnv = env[CLUSTER_ENV];
  const redis = flags.cluster ?? (fromEnv === '' ? undefined : fromEnv);
  if (redis === undefined) {
    for (const [flag, v] of [['--node-id', flags.nodeId], ['--advertise', flags.advertise]] as const)
      if (v !== undefined) throw invalidArgValue(flag, `needs --cluster (or ${CLUSTER_ENV})`, v);
    return undefined;
  }
  validateRedisTarget(redis, flags.cluster !== undefined ? '--cluster' : CLUSTER_ENV);
  if (flags.nodeId !== undefined && !NODE_ID_PATTERN.test(flags.nodeId))
    throw invalidArgValue('--node-id', 'must be 1..64 characters of A-Z a-z 0-9 . _ -', flags.nodeId);
  if (flags.advertise !== undefined) validateAdvertise(flags.advertise, '--advertise');
  return {
    redis,
    ...(flags.nodeId !== undefined ? { nodeId: flags.nodeId } : {}),
    ...(flags.advertise !== undefined ? { advertise: flags.advertise } : {}),
  };
}
