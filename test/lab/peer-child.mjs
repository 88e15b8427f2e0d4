// @ts-check
// One library Peer inside a lab namespace, driven by the test (or scenario.mjs) over the IPC channel that
// `lab.fork()` opens. Runs the compiled library (dist/): build it first (`npx tsc -p tsconfig.build.json`).
//
//   node test/lab/peer-child.mjs '<json PeerOptions>'      (started by test/lab/matrix-driver.js)
//
// Messages from the parent:
//   { type: 'expect', seq, bytes, seed, expect: { seed, bytes } }   → { type: 'expect-ok', seq }: what to send
//                                                 and expect on the next incoming connection
//   { type: 'dial', seq, target, strategy?, timeoutMs?, bytes, seed, expect }  → { type: 'dial-result', seq, ... }
//   { type: 'close' }                                             → closes the Peer and exits
// Messages to the parent:
//   { type: 'ready', observed }                  once registered
//   { type: 'attempt', event }                   every `attempt` event of the Peer
//   { type: 'incoming', at, ...Transfer, info }  a dial reached this peer (`connection` at `at`, Date.now()) and
//                                                its data exchange finished
//   { type: 'fatal', message }                   the Peer could not start (then the process exits 1)
//
// Data exchange on every connection, both sides at once: write `bytes` pseudo-random bytes, then end(); read
// until the far side's end. Each side reports the SHA-256 and size of what it sent and what it received (and
// the offset of the first unexpected byte), so the parent can check integrity both ways, and the dialer the
// time from dial() to the first byte received.
import { createHash } from 'node:crypto';

import { Peer } from '../../dist/index.js';

/** @type {import('../../lib/peer/types.js').PeerOptions} */
const options = JSON.parse(process.argv[2] ?? '{}');
const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};

/** Upper bound of one data exchange. */
const TRANSFER_TIMEOUT_MS = 30_000;

/**
 * A pseudo-random payload that its receiver can regenerate (to locate the first wrong byte, not only notice it).
 * @param {number} seed @param {number} bytes
 */
export function payloadOf(seed, bytes) {
  const buf = Buffer.alloc(bytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i + 4 <= bytes; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32BE(x, i);
  }
  return buf;
}

/**
 * Sends `bytes` bytes of payload `seed` and reads the far side's until its end, both at once; `expect` is what
 * the far side sends (seed and size), to report where a stream first differs.
 * @param {import('node:net').Socket} socket @param {number} bytes @param {number} seed
 * @param {{ seed: number, bytes: number }} expect @param {number} t0 performance.now() of dial()
 */
function exchange(socket, bytes, seed, expect, t0) {
  return new Promise((resolve) => {
    const payload = payloadOf(seed, bytes);
    const sentHash = createHash('sha256').update(payload).digest('hex');
    const recv = createHash('sha256');
    const expected = payloadOf(expect.seed, expect.bytes);
    let firstDiff = /** @type {number | null} */ (null);
    let recvBytes = 0;
    let firstByteMs = /** @type {number | null} */ (null);
    let done = false;
    const finish = (/** @type {string | null} */ error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({
        sentBytes: bytes,
        sentHash,
        recvBytes,
        recvHash: recv.digest('hex'),
        firstDiff: firstDiff ?? (recvBytes !== expect.bytes ? Math.min(recvBytes, expect.bytes) : null),
        firstByteMs,
        transferMs: performance.now() - tStart,
        error,
      });
      socket.destroy();
    };
    const tStart = performance.now();
    const timer = setTimeout(() => finish(`transfer timed out after ${TRANSFER_TIMEOUT_MS} ms (${recvBytes} bytes in)`), TRANSFER_TIMEOUT_MS);
    socket.on('error', (e) => finish(`${/** @type {any} */ (e).code ?? ''} ${e.message}`.trim()));
    socket.on('data', (chunk) => {
      if (firstByteMs === null) firstByteMs = performance.now() - t0;
      if (firstDiff === null) {
        const want = expected.subarray(recvBytes, recvBytes + chunk.length);
        if (!want.equals(chunk)) {
          let i = 0;
          while (i < want.length && want[i] === chunk[i]) i++;
          firstDiff = recvBytes + i;
        }
      }
      recvBytes += chunk.length;
      recv.update(chunk);
    });
    // Destroy only once our own bytes are flushed too ('finish'), or the unsent tail would be dropped silently.
    let ended = false;
    let flushed = false;
    socket.on('end', () => {
      ended = true;
      if (flushed) finish(null);
    });
    socket.on('finish', () => {
      flushed = true;
      if (ended) finish(null);
    });
    socket.on('close', () => finish(ended && flushed ? null : `closed early (end ${ended}, flushed ${flushed})`));
    // One write: the whole payload is queued before a FIN from the far side can make Node end our side.
    socket.end(payload);
  });
}

/** @param {any} err */
const errInfo = (err) => ({ code: err?.code ?? null, message: String(err?.message ?? err) });

let peer;
try {
  peer = await Peer.connect(options);
} catch (err) {
  send({ type: 'fatal', ...errInfo(err) });
  process.exit(1);
}

peer.on('attempt', (event) => send({ type: 'attempt', event }));
peer.on('connection', (socket, info) => {
  const t0 = performance.now();
  const at = Date.now();
  const x = incoming;
  void exchange(socket, x.bytes, x.seed, x.expect, t0).then((t) => send({ type: 'incoming', at, info: strip(info), ...t }));
});
peer.on('close', (err) => {
  if (err) send({ type: 'fatal', ...errInfo(err) });
});

/** What this peer sends on an incoming connection and expects to receive; set before each dial by the parent. */
let incoming = { bytes: 1 << 20, seed: 2, expect: { seed: 1, bytes: 1 << 20 } };

/** @param {any} info */
function strip(info) {
  const { socket, ...rest } = info ?? {};
  return rest;
}

process.on('message', async (/** @type {any} */ msg) => {
  if (msg.type === 'close') {
    await peer.close().catch(() => undefined);
    process.exit(0);
  }
  if (msg.type === 'expect') {
    incoming = { bytes: msg.bytes, seed: msg.seed, expect: msg.expect };
    send({ type: 'expect-ok', seq: msg.seq });
    return;
  }
  if (msg.type !== 'dial') return;
  const t0 = performance.now();
  try {
    const res = await peer.dial(msg.target, {
      timeoutMs: msg.timeoutMs,
      ...(msg.strategy ? { strategy: msg.strategy } : {}),
    });
    const connectMs = performance.now() - t0;
    const t = await exchange(res.socket, msg.bytes, msg.seed, msg.expect, t0);
    send({ type: 'dial-result', seq: msg.seq, ok: true, connectMs, result: strip(res), ...t });
  } catch (err) {
    send({
      type: 'dial-result',
      seq: msg.seq,
      ok: false,
      connectMs: performance.now() - t0,
      error: errInfo(err),
      attempts: /** @type {any} */ (err)?.attempts ?? [],
    });
  }
});

process.on('disconnect', () => process.exit(0)); // the parent is gone
// With a NAT probe, dials start once it has measured (bounded): a dial before that reports `unknown`.
if (options.natProbe && !peer.nat) {
  await Promise.race([new Promise((r) => peer.once('nat', r)), new Promise((r) => setTimeout(r, 10_000))]);
}
// Dual-stack: dials start once the second family has registered (or failed), bounded.
if (options.dualStackServer && !peer.secondFamily) {
  await Promise.race([new Promise((r) => peer.once('family', r)), new Promise((r) => setTimeout(r, 10_000))]);
}
send({
  type: 'ready',
  id: peer.id,
  observed: peer.observed ?? null,
  nat: { mapping: peer.natMapping, filtering: peer.natFiltering },
  secondFamily: peer.secondFamily ?? null,
});
