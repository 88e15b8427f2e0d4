// @ts-check
/**
 * Load generator and sink of the scale benchmark, in a process of its own (so that the relay's fds, memory and
 * CPU are its own). One script, used as either end:
 *
 *   → { type: 'echo' }                                      ← { type: 'echo:ok', port }   (sink: echoes every byte)
 *   → { type: 'churn', port, total, concurrency, seconds }  ← { type: 'churn:ok', ok, failed, seconds, codes }
 *       open → write 1 byte → read the echo → close, `concurrency` at a time, until `total` or `seconds`
 *   → { type: 'hold', port, count, concurrency, seconds }   ← { type: 'hold:ok', held, failed, seconds, codes }
 *       open `count` sessions and keep them (each proven end to end by one echoed byte)
 *   → { type: 'pairs', port, secret, count, concurrency, seconds, keep }
 *   ← { type: 'pairs:ok', ok, failed, seconds, codes }
 *       sessions through tcp-punch's relay service: issue a token pair (same secret as the relay), join both sides
 *       (joinRelay), one byte each way across, then close (or keep them, `keep`)
 *   → { type: 'release' }                                   ← { type: 'release:ok' }
 *   → { type: 'stats' }                                     ← { type: 'stats:ok', open, rss }
 *
 * Exits when the IPC channel closes.
 */
import net from 'node:net';
import { once } from 'node:events';
import { importDist } from './common.mjs';

/** @type {net.Socket[]} */
let held = [];
let open = 0;

/** @param {any} m */
const send = (m) => process.send?.(m);
process.on('disconnect', () => process.exit(0));

process.on('message', async (/** @type {any} */ m) => {
  try {
    if (m.type === 'echo') send({ type: 'echo:ok', port: await echo() });
    else if (m.type === 'churn') send({ type: 'churn:ok', ...(await churn(m)) });
    else if (m.type === 'hold') send({ type: 'hold:ok', ...(await hold(m)) });
    else if (m.type === 'pairs') send({ type: 'pairs:ok', ...(await pairs(m)) });
    else if (m.type === 'release') {
      for (const s of held) s.destroy();
      held = [];
      send({ type: 'release:ok' });
    } else if (m.type === 'stats') send({ type: 'stats:ok', open, rss: process.memoryUsage.rss() });
  } catch (e) {
    const err = /** @type {NodeJS.ErrnoException} */ (e);
    send({ type: 'error', message: err.stack ?? String(err), code: err.code });
  }
});

async function echo() {
  const server = net.createServer((s) => {
    open++;
    s.on('error', () => {});
    s.on('close', () => open--);
    s.on('data', (d) => s.write(d));
  });
  await new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => resolve(undefined)));
  return /** @type {net.AddressInfo} */ (server.address()).port;
}

/**
 * One session: connect, write a byte, wait for it to come back. Resolves the socket (open) or rejects.
 * @param {number} port @param {number} timeoutMs @returns {Promise<net.Socket>}
 */
function session(port, timeoutMs) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => fail(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
    const fail = (/** @type {any} */ err) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('close', () => fail(Object.assign(new Error('closed'), { code: 'ECLOSED' })));
    s.once('connect', () => s.write(Buffer.of(0x2a)));
    s.once('data', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.removeAllListeners('close');
      s.on('error', () => {});
      resolve(s);
    });
  });
}

/**
 * Runs `count` sessions `concurrency` at a time until done or the deadline; `keep` holds them open.
 * @param {{ port: number, count: number, concurrency: number, seconds: number, keep: boolean }} o
 */
function drive(o) {
  return pool(o, async () => [await session(o.port, 10_000)]);
}

/**
 * Runs `open()` `count` times, `concurrency` at a time, until done or the deadline; `keep` holds the sockets it
 * resolves, else they are destroyed at once.
 * @param {{ count: number, concurrency: number, seconds: number, keep: boolean }} o
 * @param {() => Promise<net.Socket[]>} open
 */
async function pool(o, open) {
  const t0 = performance.now();
  const deadline = Date.now() + o.seconds * 1000;
  let started = 0;
  let ok = 0;
  let failed = 0;
  /** @type {Record<string, number>} */
  const codes = {};
  const worker = async () => {
    while (started < o.count && Date.now() < deadline) {
      started++;
      try {
        const sockets = await open();
        ok++;
        for (const s of sockets) {
          if (o.keep) held.push(s);
          else s.destroy();
        }
      } catch (e) {
        failed++;
        const c = /** @type {any} */ (e).code ?? 'ERROR';
        codes[c] = (codes[c] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
  return { ok, failed, seconds: (performance.now() - t0) / 1000, codes };
}

/** @param {{ port: number, total: number, concurrency: number, seconds: number }} m */
function churn(m) {
  return drive({ port: m.port, count: m.total, concurrency: m.concurrency, seconds: m.seconds, keep: false });
}

/** @param {{ port: number, count: number, concurrency: number, seconds: number }} m */
async function hold(m) {
  const r = await drive({ port: m.port, count: m.count, concurrency: m.concurrency, seconds: m.seconds, keep: true });
  return { held: r.ok, failed: r.failed, seconds: r.seconds, codes: r.codes };
}

/** @type {any} */
let tokens = null;
let pairSeq = 0;

/**
 * @param {{ port: number, secret: string, count: number, concurrency: number, seconds: number, keep: boolean }} m
 */
async function pairs(m) {
  const relay = await importDist('relay/index.js');
  tokens ??= new relay.RelayTokens({ secret: m.secret, ttlMs: 600_000 });
  const server = { host: '127.0.0.1', port: m.port };
  return pool(m, async () => {
    const i = pairSeq++;
    const t = tokens.issue({ a: `a${i}`, b: `b${i}` });
    const settled = await Promise.allSettled([
      relay.joinRelay({ server, token: t.a, timeoutMs: 10_000 }),
      relay.joinRelay({ server, token: t.b, timeoutMs: 10_000 }),
    ]);
    const sockets = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value.socket] : []));
    const failure = settled.find((r) => r.status === 'rejected');
    if (failure) {
      for (const s of sockets) s.destroy();
      throw /** @type {PromiseRejectedResult} */ (failure).reason;
    }
    const [a, b] = /** @type {net.Socket[]} */ (sockets);
    for (const s of sockets) s.on('error', () => {});
    // One byte each way proves the pump carries the session.
    try {
      a.write(Buffer.of(1));
      await withTimeout(once(b, 'data'), 10_000);
      b.write(Buffer.of(2));
      await withTimeout(once(a, 'data'), 10_000);
    } catch (e) {
      for (const s of sockets) s.destroy();
      throw e;
    }
    return sockets;
  });
}

/**
 * @template T @param {Promise<T>} p @param {number} ms @returns {Promise<T>}
 */
function withTimeout(p, ms) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), ms);
  });
  return /** @type {Promise<T>} */ (Promise.race([p, t]).finally(() => clearTimeout(timer)));
}
