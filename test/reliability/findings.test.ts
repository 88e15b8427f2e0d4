/**
 * Findings of the reliability work, each reproduced deterministically and fixed since (lib/upgrade.ts: a peer that
 * never upgraded; lib/peer/peer.ts: relayEnd on a lost control connection; lib/peer/coordination.ts: a reset of a
 * punched socket held for the server's confirmation). Kept as regression tests.
 */
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterEach, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import { UpgradableStream } from '../../lib/upgrade.js';
import { socketPair } from '../helpers/pair.js';
import { Fleet, ServerChild } from './helpers.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await Promise.resolve(fn()).catch(() => undefined);
});

describe('reliability findings (fixed)', () => {
  // lib/upgrade.ts. A relay-first stream on which both sides have sent everything and ended on the relay, while
  // one side (B) has already begun its upgrade on the freshly punched socket: the other side (A) completes first,
  // closes its stream and drops the direct socket it never used (the relay-first strategy destroys it). B then
  // never completes although every byte of A's stream has arrived over the relay: having begun an upgrade, B reads
  // the relay's FIN as "see the peer's header", which never comes — on a FIN of the direct socket B hangs, on a
  // reset it fails with ECONNRESET. Seen in the load test as ~0.5% of short relay-first streams failing at their
  // very end (ECONNRESET with every payload byte received). Expected: once the peer's stream has ended on the
  // relay and it has announced nothing on the direct socket, losing the direct socket ends the stream normally.
  it.each(['fin', 'reset'] as const)('relay-first: the peer dropping an unused direct socket (%s) after the stream ended on the relay', async (how) => {
    const [relayA, relayB] = await socketPair();
    const [directA, directB] = await socketPair();
    for (const s of [relayA, relayB, directA, directB]) s.on('error', () => undefined);
    const a = new UpgradableStream(relayA);
    const b = new UpgradableStream(relayB);
    // How B's stream ends ('end' or an error code); listening does not start B's reading.
    const outcome = new Promise<string>((resolve) => {
      b.once('end', () => resolve('end'));
      b.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    const fromA = Buffer.alloc(100_000, 0x61);
    const fromB = Buffer.alloc(100_000, 0x62);
    // B sends everything and ends (on the relay), then its punch completes and it starts the upgrade.
    b.end(fromB);
    await once(b, 'finish');
    void b.upgrade(directB).catch(() => undefined);
    // A reads B's whole stream, sends its own and ends: A is done and closes; it never upgraded, so the strategy
    // drops its direct socket.
    const gotA: Buffer[] = [];
    a.on('data', (d: Buffer) => gotA.push(d));
    const aClosed = once(a, 'close');
    a.end(fromA);
    await aClosed;
    if (how === 'fin') directA.destroy();
    else directA.resetAndDestroy();
    // B reads: it must get all of A's stream, then its end (a hang is bounded here only to report it).
    const gotB: Buffer[] = [];
    b.on('data', (d: Buffer) => gotB.push(d));
    const ended = await Promise.race([outcome, sleep(3000).then(() => 'still open after 3 s')]);
    b.destroy();
    expect(Buffer.concat(gotA).equals(fromB)).toBe(true);
    expect(Buffer.concat(gotB).equals(fromA)).toBe(true);
    expect(ended).toBe('end');
  });

  // lib/peer/peer.ts. DialResult.relayEnd is documented to resolve undefined "if the control connection goes
  // away first", but it is only settled by peer.close(): when the server (and its relay) dies, the promise stays
  // pending for ever (onClose() fails dials in flight but not the relayEnds map), so code awaiting it hangs.
  it('relayEnd resolves (undefined) once the control connection is lost', async () => {
    const srv = await ServerChild.start({});
    cleanup.push(() => srv.kill());
    const a = await Peer.connect({ server: srv.address, id: 'a', localAddress: '127.0.0.2', reconnect: { minDelayMs: 5000, maxDelayMs: 5000 } });
    const b = await Peer.connect({ server: srv.address, id: 'b', localAddress: '127.0.0.3', reconnect: { minDelayMs: 5000, maxDelayMs: 5000 } });
    cleanup.push(() => a.close(), () => b.close());
    b.on('connection', (s) => s.on('error', () => undefined));
    const r = await a.dial('b', { strategy: 'relay' });
    r.socket.on('error', () => undefined);
    const offline = once(a, 'offline');
    await srv.kill('SIGKILL');
    await offline;
    // onClose() has run (it emits 'offline'): the promise must settle without waiting for a reconnect.
    const state = await Promise.race([r.relayEnd!.then((v) => (v === undefined ? 'settled' : 'notice')), sleep(1000).then(() => 'pending')]);
    expect(state).toBe('settled');
  });
});

describe('reliability findings (fixed since)', () => {
  // lib/peer/coordination.ts (since a11fa53, "resolve on the server's confirmation"): a side that has
  // authenticated its punched socket holds it, with no 'error' listener, until the server's `end ok` arrives. If
  // the other side — already confirmed, its dial resolved — closes that socket with a reset in the meantime (a
  // relay-first stream that finished on the relay drops its direct socket exactly so), the held socket emits
  // ECONNRESET with nobody listening and the peer's process dies on an unhandled 'error' event. The load test
  // with relay-first in its mix hits it within a few hundred dials. Here the held side's `end` is delayed by
  // 300 ms, and the dialer resets the socket as soon as its dial resolves.
  // Expected: the peer process survives (the held socket is dropped, or handed over and its error reported).
  it('a peer survives a reset of the punched socket it holds while waiting for the server\'s confirmation', async () => {
    // The server runs here, with the `end` frames it sends to 'held' delayed by 300 ms; 'held' runs in a process of
    // its own, so that its crash is observed rather than suffered.
    const { startServer } = await import('../../lib/server/server.js');
    const { ControlSession } = await import('../../lib/server/session.js');
    const send = ControlSession.prototype.send;
    ControlSession.prototype.send = function (this: InstanceType<typeof ControlSession>, msg) {
      if (this.id === 'held' && msg.type === 'end') {
        setTimeout(() => send.call(this, msg), 300);
        return true;
      }
      return send.call(this, msg);
    };
    cleanup.push(() => void (ControlSession.prototype.send = send));
    const s = await startServer({ host: '127.0.0.1' });
    cleanup.push(() => s.close());
    const address = `127.0.0.1:${s.address().port}`;
    const held = await Fleet.start({ server: address, peers: [{ id: 'held', localAddress: '127.0.0.3' }] });
    cleanup.push(() => held.close());
    const dialer = await Peer.connect({ server: address, id: 'dialer', localAddress: '127.0.0.2' });
    cleanup.push(() => dialer.close());
    const r = await dialer.dial('held', { strategy: 'direct' });
    (r.socket as import('node:net').Socket).resetAndDestroy();
    await sleep(1000);
    expect(held.child.alive).toBe(true);
  });
});
