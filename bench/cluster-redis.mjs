#!/usr/bin/env node
// @ts-check
/**
 * What the cluster's Redis costs one node: PING round trip, the one-way time of a bus message from one node to
 * the owner of a peer (SPUBLISH through Redis to the other node's subscription, sealed and opened), and lease
 * claims per second, and one renewal pass over 10,000 leases. Starts its own redis-server on a free loopback port (no persistence) and stops it.
 *
 *   npm run build:ts && node bench/cluster-redis.mjs [--count N]
 *
 * Bounded: N (default 2000) of each, and at most 60 s in all.
 */
import { parseArgs } from 'node:util';

import { startCluster, connectRedis } from '../dist/cluster/index.js';
import { startRedis } from './lib/redis-server.mjs';

const { values } = parseArgs({ options: { count: { type: 'string', default: '2000' } } });
const count = Math.max(10, Math.min(100_000, Number(values.count)));
const deadline = Date.now() + 60_000;

const redis = await startRedis({ lifetimeMs: 90_000 });
const { url } = redis;
try {
  const secret = 'bench-cluster-secret-0123456789';
  /** @type {((t: number) => void) | undefined} */
  let onDeliver;
  const hooks = (/** @type {boolean} */ record) => ({
    deliver: () => record && onDeliver?.(performance.now()),
    toCoordinator: () => undefined,
    leaseLost: () => undefined,
  });
  const a = await startCluster({ redis: url, nodeId: 'bench-a', advertise: '127.0.0.1:1', secret }, hooks(false));
  const b = await startCluster({ redis: url, nodeId: 'bench-b', advertise: '127.0.0.1:2', secret }, hooks(true));
  await b.claimPeer('target');

  const pings = [];
  const cmd = await connectRedis(url);
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const t0 = performance.now();
    await cmd.ping();
    pings.push(performance.now() - t0);
  }
  cmd.disconnect();

  const oneWay = [];
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const got = new Promise((resolve) => (onDeliver = resolve));
    const t0 = performance.now();
    await a.bus.deliver('target', { type: 'ping', seq: i, rttUs: 0 });
    oneWay.push(/** @type {number} */ (await got) - t0);
  }

  const t0 = performance.now();
  const claims = Math.min(count, 5000);
  await Promise.all(Array.from({ length: claims }, (_, i) => a.claimPeer(`p${i}`)));
  const claimRate = claims / ((performance.now() - t0) / 1000);

  // One renewal pass over every lease a busy node holds (the server's 10,000-peer figure).
  const held = 10_000;
  await Promise.all(Array.from({ length: held - claims }, (_, i) => a.claimPeer(`q${i}`)));
  const cpu0 = process.cpuUsage();
  const r0 = performance.now();
  await a.leases.renewAll();
  const renewMs = performance.now() - r0;
  const cpu = process.cpuUsage(cpu0);
  const renewCpuMs = (cpu.user + cpu.system) / 1000;

  const q = (/** @type {number[]} */ xs, /** @type {number} */ p) => {
    const s = [...xs].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
  };
  const fmt = (/** @type {number | undefined} */ x) => (x ?? NaN).toFixed(3);
  console.log(`redis PING round trip      median ${fmt(q(pings, 0.5))} ms  p99 ${fmt(q(pings, 0.99))} ms  (n=${pings.length})`);
  console.log(`bus deliver, node to node  median ${fmt(q(oneWay, 0.5))} ms  p99 ${fmt(q(oneWay, 0.99))} ms  (n=${oneWay.length})`);
  console.log(`lease claims (+subscribe)  ${Math.round(claimRate)} /s  (n=${claims}, concurrent)`);
  console.log(`renewal pass, ${held} leases   ${renewMs.toFixed(1)} ms wall, ${renewCpuMs.toFixed(1)} ms node CPU (every leaseTtlMs/3 = 5 s by default)`);
  await a.close();
  await b.close();
} finally {
  redis.stop();
}
