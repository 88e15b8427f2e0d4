/**
 * Prometheus metrics of a running server, with prom-client (the ecosystem's standard client). Values are read
 * from `stats()` at scrape time, so nothing on the data path pays for them.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServerStats } from './server/index.js';

/** What the relay reports, if one runs. */
export interface RelayMetricsSource {
  active: number;
  total: number;
  bytes: number;
  /** Sessions ended by each reason (`eof`, `limit-bytes`, ...). */
  ended: Record<string, number>;
  /** Joins refused, by code. */
  rejected: Record<string, number>;
}

export interface MetricsSources {
  server: () => ServerStats;
  relay?: () => RelayMetricsSource;
}

/** A registry holding tcp-punch's metrics (and Node's process metrics). */
export function createMetricsRegistry(sources: MetricsSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tcp_punch_process_' });
  const gauge = (name: string, help: string, read: (g: Gauge) => void, labelNames: string[] = []): void => {
    new Gauge({ name, help, labelNames, registers: [registry], collect() { read(this); } });
  };
  // Monotonic totals are exposed as counters whose value is set from the source at scrape time.
  const counter = (name: string, help: string, read: (set: (labels: Record<string, string>, v: number) => void) => void, labelNames: string[] = []): void => {
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
  };

  gauge('tcp_punch_peers_online', 'Peers registered now', (g) => g.set(sources.server().peers));
  gauge('tcp_punch_connections', 'Open connections to the server', (g) => g.set(sources.server().connections));
  gauge('tcp_punch_coordinations_active', 'Dials being coordinated now', (g) => g.set(sources.server().coordinations));
  counter('tcp_punch_connections_total', 'Connections accepted or refused since start', (set) => {
    const t = sources.server().totals;
    set({ outcome: 'accepted' }, t.connections);
    set({ outcome: 'refused' }, t.refused);
  }, ['outcome']);
  counter('tcp_punch_coordinations_total', 'Coordinated dials by outcome', (set) => {
    const t = sources.server().totals;
    set({ outcome: 'ok', path: 'direct' }, t.succeeded);
    set({ outcome: 'failed', path: 'direct' }, t.failed);
    set({ outcome: 'cancelled', path: 'direct' }, t.cancelled);
  }, ['outcome', 'path']);
  counter('tcp_punch_punch_attempts_total', 'Punch attempts coordinated', (set) => set({}, sources.server().totals.attempts));
  counter('tcp_punch_errors_total', 'Connections ended with an error, by code', (set) => {
    for (const [code, n] of Object.entries(sources.server().errors)) set({ code }, n);
  }, ['code']);

  const relay = sources.relay;
  if (relay) {
    gauge('tcp_punch_relay_sessions_active', 'Relay sessions pumping now', (g) => g.set(relay().active));
    counter('tcp_punch_relay_sessions_total', 'Relay sessions since start', (set) => set({}, relay().total));
    counter('tcp_punch_relay_bytes_total', 'Bytes relayed, both directions', (set) => set({}, relay().bytes));
    counter('tcp_punch_relay_sessions_ended_total', 'Relay sessions ended, by reason (limit-* are limit hits)', (set) => {
      for (const [reason, n] of Object.entries(relay().ended)) set({ reason }, n);
    }, ['reason']);
    counter('tcp_punch_relay_joins_rejected_total', 'Relay joins refused, by code', (set) => {
      for (const [code, n] of Object.entries(relay().rejected)) set({ code }, n);
    }, ['code']);
  }
  return registry;
}

/** Serves `registry` as Prometheus text on `GET /metrics`. */
export async function startMetricsServer(registry: Registry, port: number, host?: string): Promise<{ address(): AddressInfo; close(): Promise<void> }> {
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
