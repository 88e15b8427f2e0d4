/**
 * A node process is SIGKILLed: the others see it down after two missed heartbeats, its peers' ids are taken over
 * by the node they register with next (a higher epoch, no waiting for the dead lease), and messages for them reach
 * the new owner. A second node process, left running, is not disturbed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { outranks } from '../../lib/cluster/index.js';
import { TestRedis, redisMissing } from '../helpers/redis.js';
import { SECRET, startNode, waitFor } from '../helpers/cluster.js';
import type { TestNode } from '../helpers/cluster.js';

const CHILD = fileURLToPath(new URL('../helpers/cluster-node-child.mjs', import.meta.url));

interface Child {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
}

function spawnNode(url: string, nodeId: string, peers: string[]): Promise<Child> {
  const proc = spawn(process.execPath, [CHILD, url, nodeId, SECRET, ...peers], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Record<string, unknown>[] = [];
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`node ${nodeId} exited with ${code}`)));
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      lines.push(JSON.parse(l) as Record<string, unknown>);
      if (lines.at(-1)!.ready) resolve({ proc, lines });
    });
  });
}

describe.skipIf(redisMissing)(`a node process SIGKILLed (${redisMissing ?? 'real redis-server'})`, () => {
  let redis: TestRedis;
  let victim: Child;
  let bystander: Child;
  let survivor: TestNode;

  beforeAll(async () => {
    redis = await TestRedis.start();
    [victim, bystander] = await Promise.all([spawnNode(redis.url, 'victim', ['v1', 'v2']), spawnNode(redis.url, 'bystander', ['b1'])]);
    survivor = await startNode(redis.url, 'survivor');
  });
  afterAll(async () => {
    for (const c of [victim, bystander]) if (c && c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await survivor?.cluster.close();
    await redis?.stop();
  });

  it('is marked down, its ids are taken over, and the other nodes carry on', async () => {
    await waitFor(() => survivor.cluster.directory.node('victim') !== undefined, 5000, 'victim in the directory');
    const before = await survivor.cluster.leases.owner('v1');
    expect(before?.node).toBe('victim');
    const exited = new Promise((r) => victim.proc.once('exit', r));
    victim.proc.kill('SIGKILL');
    await exited;
    // Its peers register with the survivor at once: the claim outranks the dead node's lease.
    const { epoch, previous } = await survivor.cluster.claimPeer('v1');
    expect(previous?.node).toBe('victim');
    expect(outranks(epoch, before!.epoch)).toBe(true);
    // Two missed heartbeats later the victim is down.
    await waitFor(() => survivor.down.includes('victim'), 5000, 'victim down');
    expect(survivor.cluster.directory.node('victim')).toBeUndefined();
    // Messages for v1 reach its new owner; v2 (not re-registered yet) has nobody until its lease lapses.
    expect(await survivor.cluster.bus.deliver('v1', { type: 'ping', seq: 1, rttUs: 0 })).toBe(true);
    await waitFor(() => survivor.delivered.some((d) => d.peerId === 'v1'), 5000, 'delivery to the new owner');
    expect(await survivor.cluster.bus.deliver('v2', { type: 'ping', seq: 2, rttUs: 0 })).toBe(false);
    // The bystander node was not disturbed: still up, still owns b1, still receives.
    expect(survivor.cluster.directory.node('bystander')).toBeDefined();
    expect((await survivor.cluster.leases.owner('b1'))?.node).toBe('bystander');
    expect(await survivor.cluster.bus.deliver('b1', { type: 'ping', seq: 3, rttUs: 0 })).toBe(true);
    await waitFor(() => bystander.lines.some((l) => l.deliver === 'b1'), 5000, 'the bystander to receive');
    expect(bystander.lines.some((l) => 'lost' in l)).toBe(false);
  });
});
