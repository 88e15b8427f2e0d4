import { connect, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkNat } from '../lib/nat-check/check.js';
import { startProbeServer, type ProbeServer } from '../lib/nat-check/probe-server.js';
import { encodeMessage } from '../lib/protocol/messages.js';
import { unmapAddress } from '../lib/protocol/fields.js';
import { readMessage } from '../lib/protocol/stream.js';
import { closeServer, listen, portOf } from './helpers/net.js';
import { openFds, settledFds } from './helpers/fds.js';

describe('nat-check on loopback', () => {
  let baseline = 0;
  let probes: ProbeServer;
  beforeAll(async () => {
    baseline = openFds();
    probes = await startProbeServer({ host: '127.0.0.1' });
  });
  afterAll(async () => {
    await probes.close();
    expect(await settledFds(baseline)).toBe(baseline);
  });

  it('answers each connection with the endpoint it saw', async () => {
    const socket = connect({ host: '127.0.0.1', port: probes.ports[0]! });
    await new Promise((r) => socket.once('connect', r));
    const msg = await readMessage(socket, { timeoutMs: 5000 });
    expect(msg).toEqual({ type: 'observed', endpoint: { host: '127.0.0.1', port: socket.localPort } });
    socket.destroy();
  });

  it('sees no NAT, an endpoint-independent mapping and preserved ports', async () => {
    const result = await checkNat({ host: '127.0.0.1', probePorts: probes.ports as [number, number], rounds: 3 });
    expect(result).toMatchObject({ nat: 'none', mapping: 'endpoint-independent', portPreserving: true, publicAddresses: ['127.0.0.1'] });
    expect(result.rounds).toHaveLength(3);
    for (const r of result.rounds) expect(r.observed[0]).toEqual(r.local);
  });

  it('sees open filtering: the second probe connects back to the mapping from another port, and gets in', async () => {
    const result = await checkNat({ host: '127.0.0.1', probePorts: probes.ports as [number, number], rounds: 2 });
    expect(result.filtering).toBe('open');
    expect(result.rounds.map((r) => r.connectedBack)).toEqual([true, true]);
  });

  it('calls filtering port-dependent when nothing connects back (probes that only answer, like a filtering NAT)', async () => {
    const answerOnly = (): Promise<Server> =>
      listen((s) => {
        s.on('error', () => undefined);
        s.end(encodeMessage({ type: 'observed', endpoint: { host: unmapAddress(s.remoteAddress), port: s.remotePort ?? 0 } }));
      });
    const quiet = [await answerOnly(), await answerOnly()];
    try {
      const result = await checkNat({ host: '127.0.0.1', probePorts: [portOf(quiet[0]!), portOf(quiet[1]!)], rounds: 2 });
      expect(result).toMatchObject({ nat: 'none', mapping: 'endpoint-independent', filtering: 'port-dependent' });
      expect(result.rounds.map((r) => r.connectedBack)).toEqual([false, false]);
    } finally {
      await Promise.all(quiet.map(closeServer));
    }
  });

  it('fails with the errno of an unreachable probe', async () => {
    const dead = await startProbeServer({ host: '127.0.0.1', ports: [0] });
    const port = dead.ports[0]!;
    await dead.close();
    await expect(checkNat({ host: '127.0.0.1', probePorts: [port, port], rounds: 1 })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
