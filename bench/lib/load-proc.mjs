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
 *   → { type: 'release' }                                   ← { type: 'release:ok' }
 *   → { type: 'stats' }                                     ← { type: 'stats:ok', open, rss }
 *
 * Exits when the IPC channel closes.
 */
import net from 'node:net';

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
async function drive(o) {
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
        const s = await session(o.port, 10_000);
        ok++;
        if (o.keep) held.push(s);
        else s.destroy();
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
