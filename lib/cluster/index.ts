/**
 * Cluster mode: several server nodes sharing one Redis (ownership leases, the id registry, the node directory,
 * the message bus and cluster-wide limits). See docs/CLUSTER.md.
 */
export { Cluster, startCluster } from './cluster.js';
export type { ClusterOptions, ClusterHooks } from './cluster.js';
export { ClusterBus } from './bus.js';
export type { CardRecord, PeerCard } from './cards.js';
export type { BusHandlers } from './bus.js';
export { deriveClusterKeys, transitKey } from './crypto.js';
export type { ClusterKeys } from './crypto.js';
export { NodeDirectory } from './directory.js';
export type { NodeInfo } from './directory.js';
export { ClusterKeyspace } from './keys.js';
export { Leases, outranks, parseHolder } from './leases.js';
export type { LeaseHolder, LeaseLossReason } from './leases.js';
export { connectRedis, redactRedis, validateRedisTarget } from './redis.js';
export type { RedisTarget } from './redis.js';
export { RedisRegistry } from './registry.js';
export { SharedLimits } from './shared-limits.js';
export type { ClusterCounters, ClusterLog, DropReason } from './stats.js';
export { CoordRoutes, RemotePeer } from './remote.js';
export type { CoordRoutesOptions } from './remote.js';
export { ClusterBridge } from './bridge.js';
export type { BridgeServer, LocalPeer } from './bridge.js';
export { CLUSTER_ENV, clusterFromFlags } from './flags.js';
export type { ClusterFlags } from './flags.js';
export { RelayAdmission } from './relay-admission.js';
export type { AdmissionResult, RelayAdmissionLimits, RelaySide } from './relay-admission.js';
