/**
 * Cluster nodes for tests: each node is a startCluster() with its own two Redis connections, recording what its
 * hooks receive, so a test can check which node got which message.
 */
import { startCluster } from '../../lib/cluster/index.js';
import type { Cluster, ClusterOptions, LeaseHolder, LeaseLossReason } from '../../lib/cluster/index.js';
import type { Message } from '../../lib/protocol/index.js';
import { until } from './poll.js';

export const SECRET = 'cluster-test-secret-0123456789';

/** A node and what its hooks saw. */
export interface TestNode {
  cluster: Cluster;
  delivered: { peerId: string; msg: Message; fromNode: string }[];
  toCoordinator: { coordId: Uint8Array; fromPeer: string; msg: Message; fromNode: string }[];
  lost: { peerId: string; reason: LeaseLossReason; by: LeaseHolder | undefined }[];
  down: string[];
  logs: string[];
}

/** Starts one node on `redis` (a URL) with short timers suited to tests. */
export async function startNode(redis: string, nodeId: string, extra: Partial<ClusterOptions> = {}): Promise<TestNode> {
  const n: Omit<TestNode, 'cluster'> = { delivered: [], toCoordinator: [], lost: [], down: [], logs: [] };
  const cluster = await startCluster(
    {
      redis,
      nodeId,
      advertise: `127.0.0.1:${7000 + nodeId.length}`,
      secret: SECRET,
      heartbeatMs: 200,
      leaseTtlMs: 3000,
      connectTimeoutMs: 2000,
      log: (level, message) => n.logs.push(`${level} ${message}`),
      ...extra,
    },
    {
      deliver: (peerId, msg, fromNode) => n.delivered.push({ peerId, msg, fromNode }),
      toCoordinator: (coordId, fromPeer, msg, fromNode) => n.toCoordinator.push({ coordId, fromPeer, msg, fromNode }),
      leaseLost: (peerId, reason, by) => n.lost.push({ peerId, reason, by }),
      nodeDown: (id) => n.down.push(id),
    },
  );
  return { cluster, ...n };
}

/** {@link until} `check` holds (at most `ms`), or throws naming `what`. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  if (!(await until(check, ms))) throw new Error(`timed out waiting for ${what}`);
}
