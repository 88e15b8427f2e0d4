// @ts-check
// One library Peer inside a lab namespace, driven by the test (or scenario.mjs) over the IPC channel that
// `lab.fork()` opens. Runs the compiled library (dist/): build it first (`npx tsc -p tsconfig.build.json`).
//
//   node test/lab/peer-child.mjs '<json PeerOptions>'      (started by test/lab/matrix-driver.mjs)
//
// Messages from the parent:
//   { type: 'dial', seq, target, strategy?, timeoutMs?, bytes }  → { type: 'dial-result', seq, ...DialRecord }
//   { type: 'close' }                                             → closes the Peer and exits
// Messages to the parent:
//   { type: 'ready', observed }                  once registered
//   { type: 'attempt', event }                   every `attempt` event of the Peer
//   { type: 'incoming', ...Transfer, info }      a dial reached this peer and its data exchange finished
//   { type: 'fatal', message }                   the Peer could not start (then the process exits 1)
//
// Data exchange on every connection, both sides at once: write `bytes` random bytes, then end(); read until
// the far side's end. Each side reports the SHA-256 and size of what it sent and what it received, so the
// parent can check integrity both ways, and the dialer the time from dial() to the first byte received.
import { createHash, randomBytes } from 'node:crypto';

const lib = await import('../../dist/index.js');
/** @type {typeof import('../../lib/peer/peer.js').Peer} */
const Peer = /** @type {any} */ (lib).Peer ?? (await import('../../dist/peer/index.js')).Peer;

/** @type {import('../../lib/peer/types.js').PeerOptions} */
const options = JSON.parse(process.argv[2] ?? '{}');
const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};

/** Upper bound of one data exchange. */
const TRANSFER_TIMEOUT_MS = 30_000;

/**
 * Sends `bytes` random bytes and reads the far side's until its end, both at once.
 * @param {import('node:net').Socket} socket @param {number} bytes @param {number} t0 performance.now() of dial()
 */
function exchange(socket, bytes, t0) {
  return new Promise((resolve) => {
    const payload = randomBytes(bytes);
    const sentHash = createHash('sha256').update(payload).digest('hex');
    const recv = createHash('sha256');
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
      recvBytes += chunk.length;
      recv.update(chunk);
    });
    socket.on('end', () => finish(null));
    socket.on('close', () => finish(done ? null : 'closed before the end of the stream'));
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
  void exchange(socket, incomingBytes, t0).then((t) => send({ type: 'incoming', info: strip(info), ...t }));
});
peer.on('close', (err) => {
  if (err) send({ type: 'fatal', ...errInfo(err) });
});

/** Bytes this peer sends on incoming connections; set by each dial's parent message. */
let incomingBytes = 1 << 20;

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
    incomingBytes = msg.bytes;
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
    const t = await exchange(res.socket, msg.bytes, t0);
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
send({ type: 'ready', id: peer.id, observed: peer.observed ?? null });
