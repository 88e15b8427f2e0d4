/**
 * lib/metrics.ts against a real server and real peers on loopback: process metrics under their standard names,
 * coordinations labelled with the path they took (a relay dial is not "direct"), histograms of coordination time
 * and relayed sessions, no OpenMetrics name collisions; and the tunnel agent's metrics from tunnel events.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createMetricsRegistry, serverMetrics, tunnelMetrics } from '../lib/metrics.js';
import { relayDefaults, RELAY_DEFAULTS } from '../lib/relay/limits.js';
import { until } from './helpers/poll.js';
import { LOOSE, peer, server } from './helpers/rendezvous.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** `name{labels} value` lines of a scrape, as a map from the series to its value. */
function series(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Names whose OpenMetrics family collides: a counter `x_total` next to any other metric named `x`. */
function collisions(text: string): string[] {
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  const families = new Map<string, string[]>();
  for (const [name, type] of types) {
    const family = type === 'counter' ? name.replace(/_total$/, '') : name;
    families.set(family, [...(families.get(family) ?? []), name]);
  }
  return [...families.values()].filter((names) => names.length > 1).flat();
}

async function relayedPair() {
  const s = await server({ ...LOOSE, secret: 'metrics-test' });
  cleanup.push(() => s.close());
  const registry = createMetricsRegistry();
  serverMetrics(registry, s);
  const a = await peer(s, 'alice', { secret: 'metrics-test' });
  const b = await peer(s, 'bob', { secret: 'metrics-test' });
  cleanup.push(() => a.close(), () => b.close());
  b.on('connection', (socket) => {
    socket.on('error', () => {});
    socket.end('pong');
  });
  return { s, a, b, registry };
}

describe('server metrics', () => {
  it('counts a relay-strategy dial under path="relay", not "direct", and times it', async () => {
    const { s, a, registry } = await relayedPair();
    const r = await a.dial('bob', { strategy: 'relay' });
    expect(r.path).toBe('relay');
    r.socket.on('error', () => {});
    r.socket.resume();
    r.socket.end('ping');
    await r.relayEnd;
    await until(() => (s.relay?.stats().ended.eof ?? 0) >= 1);
    const m = series(await registry.metrics());
    expect(m.get('tcp_punch_coordinations_total{path="relay",outcome="ok"}')).toBe(1);
    expect([...m.keys()].filter((k) => k.startsWith('tcp_punch_coordinations_total{path="direct"'))).toEqual([]);
    expect(m.get('tcp_punch_coordination_duration_seconds_count{path="relay",outcome="ok"}')).toBe(1);
    expect(m.get('tcp_punch_relay_session_duration_seconds_count{reason="eof"}')).toBe(1);
    expect(m.get('tcp_punch_relay_session_bytes_count{reason="eof"}')).toBe(1);
    expect(m.get('tcp_punch_relay_session_bytes_sum{reason="eof"}')).toBe(8); // "ping" + "pong"
    expect(m.get('tcp_punch_relay_bytes_total{direction="a_to_b"}')).toBe(4);
    expect(m.get('tcp_punch_relay_bytes_total{direction="b_to_a"}')).toBe(4);
    expect(m.get('tcp_punch_peers_online')).toBe(2);
  });

  it('counts a direct dial under path="direct"', async () => {
    const { s, a, registry } = await relayedPair();
    const r = await a.dial('bob', { strategy: 'direct' });
    expect(r.path).toBe('direct');
    r.socket.destroy();
    // Both sides report the outcome to the server off the dial's critical path: the coordination ends just after.
    await until(() => s.stats().totals.succeeded >= 1);
    const m = series(await registry.metrics());
    expect(m.get('tcp_punch_coordinations_total{path="direct",outcome="ok"}')).toBe(1);
    expect([...m.keys()].filter((k) => k.includes('path="relay"'))).toEqual([]);
  });

  it('exports process metrics under their standard names, and no colliding families', async () => {
    const { registry } = await relayedPair();
    const text = await registry.metrics();
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).not.toMatch(/tcp_punch_process_/);
    expect(text).toMatch(/^tcp_punch_connections_open \d/m);
    expect(collisions(text)).toEqual([]);
    // The same text in the OpenMetrics format prom-client renders, where a collision would be an error.
    (registry as unknown as Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>).setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const open = await registry.metrics();
    expect(open).toMatch(/^# TYPE tcp_punch_connections counter$/m);
    expect(collisions(open)).toEqual([]);
  });

  it('counts accepted and refused connections apart', async () => {
    const s = await server({ ...LOOSE, maxConnections: 1 });
    cleanup.push(() => s.close());
    const registry = createMetricsRegistry();
    serverMetrics(registry, s);
    const a = await peer(s, 'alice');
    cleanup.push(() => a.close());
    await expect(peer(s, 'bob', { reconnect: false })).rejects.toThrow();
    const m = series(await registry.metrics());
    expect(m.get('tcp_punch_connections_total{outcome="accepted"}')).toBe(1);
    expect(m.get('tcp_punch_connections_total{outcome="refused"}')).toBeGreaterThanOrEqual(1);
  });
});

describe('relay defaults by mode', () => {
  it('a server with a secret relays with no byte or duration cap; an open one keeps the caps', async () => {
    const withSecret = await server({ secret: 'x' });
    const open = await server({});
    const set = await server({ secret: 'x', relay: { limits: { maxBytesPerSession: 1000 } } });
    cleanup.push(() => withSecret.close(), () => open.close(), () => set.close());
    expect(withSecret.relay!.limits).toEqual({ ...RELAY_DEFAULTS, maxBytesPerSession: 0, maxDurationMs: 0 });
    expect(withSecret.relay!.limits).toEqual(relayDefaults('secret'));
    expect(withSecret.relay!.limits.idleTimeoutMs).toBe(RELAY_DEFAULTS.idleTimeoutMs);
    expect(open.relay!.limits).toEqual(RELAY_DEFAULTS);
    expect(set.relay!.limits).toMatchObject({ maxBytesPerSession: 1000, maxDurationMs: 0 });
  });

  it('a bad limit is still refused with the option named', async () => {
    await expect(server({ secret: 'x', relay: { limits: 'lots' as never } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(server({ relay: { limits: { maxSessions: 0 } } })).rejects.toThrow(/maxSessions/);
  });
});

describe('tunnel agent metrics', () => {
  it('tunnels open, bytes, time to connect and failures by code, per service', async () => {
    const registry = new Registry();
    const t = tunnelMetrics(registry);
    t.onEvent({ type: 'open', peerId: 'p', path: 'relay', family: 4, attempt: 1, connectMs: 30, waitMs: 1 }, 'web');
    t.onEvent({ type: 'open', peerId: 'p', path: 'direct', family: 4, attempt: 1, connectMs: 10, waitMs: 1 }, 'web');
    const result = { reason: 'eof', bytesAToB: 100, bytesBToA: 250, durationMs: 2000 } as never;
    t.onEvent({ type: 'close', peerId: 'p', path: 'relay', result }, 'web');
    t.onEvent({ type: 'fail', peerId: 'p', code: 'ERR_PEER_OFFLINE', message: 'x' }, 'ssh');
    const m = series(await registry.metrics());
    expect(m.get('tcp_punch_tunnels_open{service="web"}')).toBe(1);
    expect(m.get('tcp_punch_tunnels_opened_total{service="web",path="relay"}')).toBe(1);
    expect(m.get('tcp_punch_tunnels_closed_total{service="web",reason="eof"}')).toBe(1);
    expect(m.get('tcp_punch_tunnel_bytes_total{service="web",direction="sent"}')).toBe(100);
    expect(m.get('tcp_punch_tunnel_bytes_total{service="web",direction="received"}')).toBe(250);
    expect(m.get('tcp_punch_tunnel_connect_seconds_count{service="web",path="direct"}')).toBe(1);
    expect(m.get('tcp_punch_tunnel_connect_seconds_sum{service="web",path="relay"}')).toBeCloseTo(0.03);
    expect(m.get('tcp_punch_tunnel_failures_total{service="ssh",code="ERR_PEER_OFFLINE"}')).toBe(1);
    expect(collisions(await registry.metrics())).toEqual([]);
  });
});
