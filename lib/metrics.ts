/**
 * Prometheus metrics with prom-client (the ecosystem's standard client): Node's process metrics under their
 * standard names, a rendezvous server's (read from `stats()` at scrape time, plus histograms fed by its
 * `coordination` and its relay's `session-end` events), and a tunnel agent's (`expose`, `connect`).
 *
 * Names follow the OpenMetrics rules: a counter `x_total` has no gauge `x` beside it (its family would be `x`
 * too), so gauges of things open now end in `_open` / `_active` / `_online`.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RendezvousServer } from './server/index.js';
import type { ClusterCounters } from './cluster/index.js';
import type { TunnelEvent } from './tunnel/expose.js';

/** Coordination time, seconds: a punch takes tens of ms on a LAN and seconds across retries. */
const COORDINATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Relayed session or tunnel duration, seconds: from a short request to a day-long stream. */
const DURATION_BUCKETS = [0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600];
/** Bytes of a session, both ways: 1 KiB to 16 GiB, by factors of 8. */
const BYTE_BUCKETS = Array.from({ length: 9 }, (_, i) => 1024 * 8 ** i);

/** A registry with Node's process metrics (`process_cpu_seconds_total`, `nodejs_heap_size_used_bytes`, ...). */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** A counter whose value is set from a monotonic source at scrape time. */
function readCounter(registry: Registry, name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      read((labels, v) => this.inc(labels, v));
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
}

/**
 * Registers a rendezvous server's metrics (its built-in relay's, when it runs one, and its cluster's in cluster
 * mode: `tcp_punch_cluster_*`) in `registry`.
 */
export function serverMetrics(registry: Registry, server: RendezvousServer): void {
  const stats = () => server.stats();
  readGauge(registry, 'tcp_punch_peers_online', 'Peers registered now', () => stats().peers);
  readGauge(registry, 'tcp_punch_connections_open', 'Open connections to the server', () => stats().connections);
  readGauge(registry, 'tcp_punch_coordinations_active', 'Dials being coordinated now', () => stats().coordinations);
  readCounter(registry, 'tcp_punch_connections_total', 'Connections accepted or refused since start', ['outcome'], (set) => {
    const t = stats().totals;
    set({ outcome: 'accepted' }, t.connections - t.refused);
    set({ outcome: 'refused' }, t.refused);
  });
  readCounter(registry, 'tcp_punch_punch_attempts_total', 'Punch or relay attempts coordinated', [], (set) => set({}, stats().totals.attempts));
  readCounter(registry, 'tcp_punch_errors_total', 'Connections ended with an error, by code', ['code'], (set) => {
    for (const [code, n] of Object.entries(stats().errors)) set({ code }, n);
  });

  const coordinations = new Counter({
    name: 'tcp_punch_coordinations_total',
    help: 'Coordinated dials ended, by the path asked for (direct, relay, relay-upgradable) and outcome',
    labelNames: ['path', 'outcome'],
    registers: [registry],
  });
  const coordinationTime = new Histogram({
    name: 'tcp_punch_coordination_duration_seconds',
    help: 'Time from a dial request to its end, by path and outcome',
    labelNames: ['path', 'outcome'],
    buckets: COORDINATION_BUCKETS,
    registers: [registry],
  });
  server.on('coordination', (e) => {
    coordinations.inc({ path: e.path, outcome: e.outcome });
    coordinationTime.observe({ path: e.path, outcome: e.outcome }, e.durationMs / 1000);
  });

  if (server.stats().cluster) clusterMetrics(registry, () => server.stats().cluster);

  const relay = server.relay;
  if (!relay) return;
  readGauge(registry, 'tcp_punch_relay_sessions_active', 'Relay sessions pumping now', () => relay.stats().active);
  readGauge(registry, 'tcp_punch_relay_sessions_pending', 'Relay sessions waiting for their second side', () => relay.stats().pending);
  readCounter(registry, 'tcp_punch_relay_sessions_total', 'Relay sessions started since start', [], (set) => set({}, relay.stats().started));
  readCounter(registry, 'tcp_punch_relay_sessions_ended_total', 'Relay sessions ended, by reason (limit-* are limit hits)', ['reason'], (set) => {
    for (const [reason, n] of Object.entries(relay.stats().ended)) set({ reason }, n);
  });
  readCounter(registry, 'tcp_punch_relay_joins_rejected_total', 'Relay joins refused, by code', ['code'], (set) => {
    for (const [code, n] of Object.entries(relay.stats().rejected)) set({ code }, n);
  });
  const bytes = new Counter({
    name: 'tcp_punch_relay_bytes_total',
    help: 'Bytes relayed by ended sessions, by direction (a_to_b: from the dialling side)',
    labelNames: ['direction'],
    registers: [registry],
  });
  const sessionTime = new Histogram({
    name: 'tcp_punch_relay_session_duration_seconds',
    help: 'Duration of relayed sessions that ran, by end reason',
    labelNames: ['reason'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const sessionBytes = new Histogram({
    name: 'tcp_punch_relay_session_bytes',
    help: 'Bytes of relayed sessions that ran, both ways together, by end reason',
    labelNames: ['reason'],
    buckets: BYTE_BUCKETS,
    registers: [registry],
  });
  bytes.inc({ direction: 'a_to_b' }, 0);
  bytes.inc({ direction: 'b_to_a' }, 0);
  // Sessions that never paired (join timeout, refusals) moved nothing: they are counted by reason above only.
  const running = new Set<string>();
  relay.on('session', (s) => running.add(s.sessionId));
  relay.on('session-end', (e) => {
    bytes.inc({ direction: 'a_to_b' }, e.bytesAToB);
    bytes.inc({ direction: 'b_to_a' }, e.bytesBToA);
    if (!running.delete(e.sessionId)) return;
    sessionTime.observe({ reason: e.reason }, e.durationMs / 1000);
    sessionBytes.observe({ reason: e.reason }, e.bytesAToB + e.bytesBToA);
  });
}

/**
 * Cluster mode (docs/CLUSTER.md, "Metrics"): this node's view, read from `stats().cluster` at scrape time; only
 * registered for a server in cluster mode (startServer resolves once the node has joined).
 */
function clusterMetrics(registry: Registry, read: () => ClusterCounters | undefined): void {
  const gauge = (name: string, help: string, value: (c: ClusterCounters) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const c = read();
        if (c && !Number.isNaN(value(c))) this.set(value(c));
      },
    });
  };
  const counter = (name: string, help: string, labelNames: string[], values: (c: ClusterCounters) => [Record<string, string>, number][]): void => {
    readCounter(registry, name, help, labelNames, (set) => {
      const c = read();
      if (c) for (const [labels, v] of values(c)) set(labels, v);
    });
  };
  gauge('tcp_punch_cluster_peers_local', 'Peers registered on this node', (c) => c.peersLocal);
  gauge('tcp_punch_cluster_peers_online', 'Peers registered on all live nodes, as their last heartbeats said', (c) => c.clusterPeers);
  gauge('tcp_punch_cluster_nodes_up', 'Live nodes in the directory, this one included', (c) => c.nodesUp);
  gauge('tcp_punch_cluster_leases_held', 'Ownership leases this node holds now', (c) => c.leases.held);
  gauge('tcp_punch_cluster_redis_rtt_seconds', 'Last Redis PING round trip (one per heartbeat)', (c) => c.redis.rttMs / 1000);
  gauge('tcp_punch_cluster_redis_rtt_min_seconds', 'Least Redis PING round trip of the last 16 heartbeats (the network, without event-loop waits)', (c) => c.redis.rttMinMs / 1000);
  gauge('tcp_punch_cluster_redis_connected', '1 while the connection to Redis is ready', (c) => (c.redis.connected ? 1 : 0));
  counter('tcp_punch_cluster_redis_reconnects_total', 'Times the connection to Redis came back after being lost', [], (c) => [[{}, c.redis.reconnects]]);
  counter('tcp_punch_cluster_cross_node_dials_total', 'Dials with a side on another node, by outcome (ok or the error code)', ['outcome'], (c) =>
    Object.entries(c.crossNodeDials).map(([outcome, n]) => [{ outcome }, n]),
  );
  counter('tcp_punch_cluster_card_lookups_total', 'Peer card lookups of cross-node dials (hit: cached, miss: read from Redis) and messages found planned on a stale card', ['outcome'], (c) => [
    [{ outcome: 'hit' }, c.cards.hits],
    [{ outcome: 'miss' }, c.cards.misses],
    [{ outcome: 'stale' }, c.cards.stale],
  ]);
  counter('tcp_punch_cluster_lease_events_total', 'Lease claims, renewals, restores after Redis lost them, losses and errors', ['event'], (c) => [
    [{ event: 'claim' }, c.leases.claims],
    [{ event: 'renewal' }, c.leases.renewals],
    [{ event: 'restored' }, c.leases.restored],
    [{ event: 'lost_stolen' }, c.leases.lostStolen],
    [{ event: 'lost_expired' }, c.leases.lostExpired],
    [{ event: 'error' }, c.leases.errors],
  ]);
  counter('tcp_punch_cluster_bus_messages_total', 'Bus messages, by what happened to them', ['outcome'], (c) => [
    [{ outcome: 'sent' }, c.bus.sent],
    [{ outcome: 'undeliverable' }, c.bus.undeliverable],
    [{ outcome: 'send_error' }, c.bus.sendErrors],
    [{ outcome: 'received' }, c.bus.received],
  ]);
  counter('tcp_punch_cluster_bus_dropped_total', 'Bus messages dropped, by reason (forged, malformed, stale, replayed, unroutable)', ['reason'], (c) =>
    Object.entries(c.bus.dropped).map(([reason, n]) => [{ reason }, n]),
  );
  counter('tcp_punch_cluster_node_records_rejected_total', 'Node records that did not open with this cluster\'s key', [], (c) => [[{}, c.nodesRejected]]);
}

/** The metrics of a tunnel agent (`expose`, `connect`); feed it every {@link TunnelEvent} with its service. */
export interface TunnelMetrics {
  onEvent(event: TunnelEvent, service: string): void;
}

/** Registers a tunnel agent's metrics in `registry`: tunnels open, bytes, time to connect, failures by code. */
export function tunnelMetrics(registry: Registry): TunnelMetrics {
  const open = new Gauge({ name: 'tcp_punch_tunnels_open', help: 'Tunnels carrying a connection now', labelNames: ['service'], registers: [registry] });
  const opened = new Counter({
    name: 'tcp_punch_tunnels_opened_total',
    help: 'Tunnels opened, by service and path (direct, relay)',
    labelNames: ['service', 'path'],
    registers: [registry],
  });
  const closed = new Counter({
    name: 'tcp_punch_tunnels_closed_total',
    help: 'Tunnels closed, by service and reason',
    labelNames: ['service', 'reason'],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'tcp_punch_tunnel_failures_total',
    help: 'Tunnels that could not open, by service and error code',
    labelNames: ['service', 'code'],
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'tcp_punch_tunnel_bytes_total',
    help: 'Bytes carried by closed tunnels, by service and direction (sent: from this side)',
    labelNames: ['service', 'direction'],
    registers: [registry],
  });
  const connectTime = new Histogram({
    name: 'tcp_punch_tunnel_connect_seconds',
    help: 'Time to connect the peer connection of a tunnel (dial or accept), by service and path',
    labelNames: ['service', 'path'],
    buckets: COORDINATION_BUCKETS,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tcp_punch_tunnel_duration_seconds',
    help: 'Duration of closed tunnels, by service and path',
    labelNames: ['service', 'path'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  return {
    onEvent(e, service) {
      switch (e.type) {
        case 'open':
          open.inc({ service });
          opened.inc({ service, path: e.path });
          connectTime.observe({ service, path: e.path }, e.connectMs / 1000);
          break;
        case 'close':
          open.dec({ service });
          closed.inc({ service, reason: e.result.reason });
          bytes.inc({ service, direction: 'sent' }, e.result.bytesAToB);
          bytes.inc({ service, direction: 'received' }, e.result.bytesBToA);
          duration.observe({ service, path: e.path }, e.result.durationMs / 1000);
          break;
        case 'fail':
          failures.inc({ service, code: e.code });
          break;
      }
    },
  };
}

/** Where metrics are served unless told otherwise: this host only, since they describe its peers and traffic. */
export const METRICS_DEFAULT_HOST = '127.0.0.1';

/** Serves `registry` as Prometheus text on `GET /metrics` (on {@link METRICS_DEFAULT_HOST} by default). */
export async function startMetricsServer(registry: Registry, port: number, host = METRICS_DEFAULT_HOST): Promise<{ address(): AddressInfo; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  return {
    address: () => server.address() as AddressInfo,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
