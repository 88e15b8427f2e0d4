/**
 * The tunnel's spare pool (lib/tunnel/pool.ts) over real loopback sockets, with the exposing side played by the
 * test: a spare is handed out only when known alive (a recent PONG, or one to a probe), a silent or closed spare
 * is never handed out, a spare the relay ends is dropped with the relay's reason, and a relay idle limit the
 * spares run into shortens the ping interval.
 */
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { DialResult, RelayEndInfo } from '../lib/peer/types.js';
import { ConnectionPool, type TunnelConnection } from '../lib/tunnel/pool.js';
import { PING, PONG } from '../lib/tunnel/wire.js';
import { socketPair } from './helpers/pair.js';
import { until } from './helpers/poll.js';

/** The far ends of the spares the pool dialled, and how each should behave. */
interface Far {
  socket: Socket;
  answer: boolean;
  pings: number;
  endRelay?: (info: RelayEndInfo | undefined) => void;
}
let fars: Far[] = [];
let pools: ConnectionPool[] = [];
afterEach(() => {
  for (const p of pools) p.close();
  for (const f of fars) f.socket.destroy();
  pools = [];
  fars = [];
});

function dialer(opts: { answer: () => boolean; relayed?: boolean }) {
  return async (): Promise<TunnelConnection> => {
    const [near, far] = await socketPair();
    far.on('error', () => {});
    near.on('error', () => {});
    const f: Far = { socket: far, answer: opts.answer(), pings: 0 };
    far.on('data', (d: Buffer) => {
      for (const b of d) {
        if (b !== PING) continue;
        f.pings++;
        if (f.answer) far.write(Buffer.from([PONG]));
      }
    });
    const relayEnd = opts.relayed ? new Promise<RelayEndInfo | undefined>((r) => (f.endRelay = r)) : undefined;
    fars.push(f);
    const result = { socket: near, path: opts.relayed ? 'relay' : 'direct', ...(relayEnd ? { relayEnd } : {}) } as unknown as DialResult;
    return { result, stream: near };
  };
}

function pool(o: Partial<ConstructorParameters<typeof ConnectionPool>[0]> & Pick<ConstructorParameters<typeof ConnectionPool>[0], 'dial'>) {
  const p = new ConnectionPool({ size: 1, probeTimeoutMs: 200, freshMs: 100, ...o });
  pools.push(p);
  p.start();
  return p;
}

describe('tunnel spare pool', () => {
  it('hands out a spare that answers the probe, without a fresh dial', async () => {
    let dials = 0;
    const dial = dialer({ answer: () => true });
    const p = pool({ dial: () => (dials++, dial()) });
    expect(await until(() => p.ready === 1)).toBe(true);
    await sleep(150); // older than freshMs: the pool probes it
    const taken = await p.take();
    expect(taken.fromPool).toBe(true);
    expect(fars[0]!.pings).toBe(1);
    expect(taken.conn.stream.destroyed).toBe(false);
  });

  it('never hands out a spare that stopped answering: the probe fails and a live connection serves the client', async () => {
    let n = 0;
    const p = pool({ dial: dialer({ answer: () => n++ > 0 }) });
    expect(await until(() => p.ready === 1)).toBe(true);
    await sleep(150);
    const silent = fars[0]!;
    const taken = await p.take();
    expect(silent.pings).toBe(1);
    // The client got the refill started meanwhile, or a fresh dial: a connection that answers, not the silent one.
    const far = fars.find((f) => f.socket.remotePort === (taken.conn.stream as Socket).localPort)!;
    expect(far).not.toBe(silent);
    expect(far.answer).toBe(true);
    expect(await until(() => silent.socket.destroyed || silent.socket.readableEnded)).toBe(true);
  });

  it('drops a spare whose far end closes at once, reports it and refills', async () => {
    const drops: string[] = [];
    const p = pool({ dial: dialer({ answer: () => true }), onDrop: (why) => drops.push(why) });
    expect(await until(() => p.ready === 1)).toBe(true);
    fars[0]!.socket.destroy();
    expect(await until(() => drops.length === 1)).toBe(true);
    expect(drops[0]).toMatch(/closed/);
    expect(await until(() => fars.length === 2 && p.ready === 1)).toBe(true);
  });

  it('drops a relayed spare the relay ends, naming the reason, and pings within a relay idle limit it learnt', async () => {
    const drops: string[] = [];
    const p = pool({ dial: dialer({ answer: () => true, relayed: true }), keepaliveMs: 60_000, onDrop: (why) => drops.push(why) });
    expect(await until(() => p.ready === 1)).toBe(true);
    await sleep(300);
    fars[0]!.endRelay!({ sessionId: 's', reason: 'limit-idle', code: 'ERR_RELAY_LIMIT_IDLE', bytesSent: 0, bytesReceived: 0 });
    expect(await until(() => drops.length === 1)).toBe(true);
    expect(drops[0]).toBe('the relay ended it (limit-idle ERR_RELAY_LIMIT_IDLE)');
    // It lasted ~300 ms idle: the pool now pings every third of that, so the refilled spare is pinged.
    expect(p.keepaliveMs).toBeLessThan(300);
    expect(await until(() => fars.length === 2 && fars[1]!.pings >= 2, 3000)).toBe(true);
  });
});
