/**
 * The cluster's counters, as plain numbers. The modules increment them; `Cluster.stats()` returns a copy, and the
 * server's metrics module exports it (a counter per field, gauges for `peersLocal`, `clusterPeers`, `nodesUp`,
 * `leasesHeld` and the Redis round trip).
 */

/** Why a bus message was dropped. */
export type DropReason = 'forged' | 'malformed' | 'stale' | 'replayed' | 'unroutable';

/** Counters of one node. */
export interface ClusterCounters {
  /** Peers registered on this node (set by the server through the hooks). */
  peersLocal: number;
  /** Peers registered on all live nodes, as their heartbeats last said. */
  clusterPeers: number;
  /** Live nodes in the directory, this one included. */
  nodesUp: number;
  /** Node records that did not open with this cluster's key (another secret, forged), ignored. */
  nodesRejected: number;
  leases: {
    /** Leases this node holds now. */
    held: number;
    claims: number;
    renewals: number;
    /** Leases re-created after Redis lost them (restart without persistence, failover). */
    restored: number;
    /** Lost to a newer claim (the peer registered elsewhere). */
    lostStolen: number;
    /** Given up because Redis could not be reached for longer than the lease. */
    lostExpired: number;
    /** Renewals or claims that failed on a Redis error. */
    errors: number;
  };
  bus: {
    /** Messages published. */
    sent: number;
    /** Published messages no node was subscribed for (the target is not online anywhere). */
    undeliverable: number;
    /** Publishes that failed on a Redis error. */
    sendErrors: number;
    /** Messages received and accepted. */
    received: number;
    /** Messages dropped, by reason. */
    dropped: Record<DropReason, number>;
  };
  /** Peer cards for cross-node dials (lib/cluster/cards.ts). */
  cards: {
    /** Lookups answered from this node's cache. */
    hits: number;
    /** Lookups that read Redis. */
    misses: number;
    /** Messages for a local peer planned on an outdated card (its peer was kept out of that attempt). */
    stale: number;
  };
  /** Cross-node dials by outcome, as the server reports them (`ok`, or an error code). */
  crossNodeDials: Record<string, number>;
  redis: {
    /** Last measured PING round trip in ms (NaN before the first). */
    rttMs: number;
    /** Smoothed round trip (EWMA, 1/8) in ms. */
    rttAvgMs: number;
    /**
     * The least of the last 16 round trips in ms: the network's share. A PING's reply waits for the node's event
     * loop like any other, so under load the last and the smoothed figures read several times the real round trip.
     */
    rttMinMs: number;
    /** True while the command connection is ready. */
    connected: boolean;
    /** Times the connection came back after being lost. */
    reconnects: number;
  };
}

/** Fresh counters. */
export function newCounters(): ClusterCounters {
  return {
    peersLocal: 0,
    clusterPeers: 0,
    nodesUp: 0,
    nodesRejected: 0,
    leases: { held: 0, claims: 0, renewals: 0, restored: 0, lostStolen: 0, lostExpired: 0, errors: 0 },
    bus: {
      sent: 0,
      undeliverable: 0,
      sendErrors: 0,
      received: 0,
      dropped: { forged: 0, malformed: 0, stale: 0, replayed: 0, unroutable: 0 },
    },
    cards: { hits: 0, misses: 0, stale: 0 },
    crossNodeDials: {},
    redis: { rttMs: Number.NaN, rttAvgMs: Number.NaN, rttMinMs: Number.NaN, connected: false, reconnects: 0 },
  };
}

/** The last round trips of each counters object, for `rttMinMs`. */
const recent = new WeakMap<ClusterCounters, number[]>();
const RTT_WINDOW = 16;

/** Records one Redis round trip. */
export function recordRtt(c: ClusterCounters, ms: number): void {
  let window = recent.get(c);
  if (!window) recent.set(c, (window = []));
  window.push(ms);
  if (window.length > RTT_WINDOW) window.shift();
  c.redis.rttMinMs = Math.min(...window);
  c.redis.rttMs = ms;
  c.redis.rttAvgMs = Number.isNaN(c.redis.rttAvgMs) ? ms : c.redis.rttAvgMs + (ms - c.redis.rttAvgMs) / 8;
}

/** A deep copy, safe to hand out. */
export function snapshot(c: ClusterCounters): ClusterCounters {
  return structuredClone(c);
}

/** The logger the cluster modules write to (the server passes its own). */
export type ClusterLog = (level: 'info' | 'warn' | 'error', message: string) => void;
