// @ts-check
/**
 * Load generator and sink of the scale benchmark, in a process of its own (so that the relay's fds, memory and
 * CPU are its own). One script, used as either end:
 *
 *   → { type: 'echo' }   ← { type: 'echo:ok', port }   (sink: echoes every byte)
 *   → { type: 'sessions', port, secret?, count, concurrency, seconds, keep }   ← { type: 'sessions:ok', ok, failed, seconds, codes }
 *       `count` sessions, `concurrency` at a time, until done or `seconds`; each proven end to end, then closed
 *       (or held until the process ends, `keep`). Without `secret`: connect, one byte to the echo and back. With it (tcp-punch's relay
 *       service): issue a token pair signed with the relay's secret, join both sides (joinRelay), one byte each way.
 */
import net from 'node:net';
import { once } from 'node:events';
import { importDist } from './common.mjs';
import { firstByte, pool, serve } from './child.mjs';

const TIMEOUT_MS = 10_000;
/** Sessions kept open (`keep`): they live as long as the process. @type {net.Socket[]} */
const held = [];
/** @type {any} */
let tokens = null;
let pairSeq = 0;

serve({
  echo: async () => {
    const server = net.createServer((s) => s.on('error', () => {}).on('data', (d) => s.write(d)));
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 });
    await once(server, 'listening');
    return { port: /** @type {net.AddressInfo} */ (server.address()).port };
  },
  sessions: async (/** @type {{ port: number, secret?: string, count: number, concurrency: number, seconds: number, keep: boolean }} */ m) => {
    const relay = m.secret ? await importDist('relay/index.js') : null;
    if (relay) tokens ??= new relay.RelayTokens({ secret: m.secret, ttlMs: 600_000 });
    return pool(m, async () => {
      const sockets = relay ? await pair(relay, m.port) : [await echoed(m.port)];
      for (const s of sockets) m.keep ? held.push(s) : s.destroy();
    });
  },
});

/** One plain session: connect, one byte to the echo and back. @param {number} port */
async function echoed(port) {
  const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
  s.on('error', () => {});
  s.once('connect', () => s.write(Buffer.of(0x2a)));
  try {
    await firstByte(s, TIMEOUT_MS);
    return s;
  } catch (e) {
    s.destroy();
    throw e;
  }
}

/** One relay-service session: both sides join with a token pair, one byte each way. @param {any} relay @param {number} port */
async function pair(relay, port) {
  const i = pairSeq++;
  const t = tokens.issue({ a: `a${i}`, b: `b${i}` });
  const server = { host: '127.0.0.1', port };
  const settled = await Promise.allSettled([t.a, t.b].map((token) => relay.joinRelay({ server, token, timeoutMs: TIMEOUT_MS })));
  const sockets = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value.socket.on('error', () => {})] : []));
  const failure = settled.find((r) => r.status === 'rejected');
  try {
    if (failure) throw (/** @type {PromiseRejectedResult} */ (failure).reason);
    const [a, b] = sockets;
    a.write(Buffer.of(1));
    await firstByte(b, TIMEOUT_MS);
    b.write(Buffer.of(2));
    await firstByte(a, TIMEOUT_MS);
    return sockets;
  } catch (e) {
    for (const s of sockets) s.destroy();
    throw e;
  }
}
