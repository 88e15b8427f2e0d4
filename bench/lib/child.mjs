// @ts-check
/**
 * What the benchmark child processes share: answering the parent's requests over IPC, running an operation many
 * times, a bounded number at once, until a count or a deadline, and waiting for a connection's first byte.
 */

/**
 * Serves the parent's requests: `{ type, ...body }` → `{ type: '<type>:ok', ...await handlers[type](body) }`, or
 * `{ type: 'error', message, code }` when the handler throws. The process exits when the IPC channel closes.
 * @param {Record<string, (m: any) => unknown>} handlers
 */
export function serve(handlers) {
  const send = (/** @type {any} */ m) => process.send?.(m);
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (/** @type {any} */ m) => {
    const handler = handlers[m?.type];
    if (!handler) return;
    try {
      send({ type: `${m.type}:ok`, ...(/** @type {object} */ (await handler(m)) ?? {}) });
    } catch (e) {
      const err = /** @type {NodeJS.ErrnoException} */ (e);
      send({ type: 'error', message: err.stack ?? String(err), code: err.code });
    }
  });
}

/**
 * Runs `op` up to `count` times, `concurrency` at a time, until done or `seconds` pass; counts failures by code.
 * @param {{ count: number, concurrency: number, seconds: number }} o @param {() => Promise<unknown>} op
 */
export async function pool(o, op) {
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
        await op();
        ok++;
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

/**
 * Resolves with the time (performance.now()) `s` received its first byte; rejects if it fails or closes first, or
 * after `timeoutMs` (codes ECLOSED, ETIMEDOUT).
 * @param {import('node:net').Socket} s @param {number} timeoutMs @returns {Promise<number>}
 */
export function firstByte(s, timeoutMs) {
  return new Promise((resolve, reject) => {
    const settle = (/** @type {Error | null} */ err) => {
      clearTimeout(timer);
      s.off('data', onData).off('close', onClose).off('error', settle);
      if (err) reject(err);
      else resolve(performance.now());
    };
    const onData = () => settle(null);
    const onClose = () => settle(Object.assign(new Error('closed'), { code: 'ECLOSED' }));
    const timer = setTimeout(() => settle(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
    s.on('data', onData).on('close', onClose).on('error', settle);
  });
}
