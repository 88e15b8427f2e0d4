// @ts-check
// The data-safety check every reliability stream goes through: both sides at once write a self-verifying
// message and read the other's.
//
//   u32 BE length · `length` random bytes · SHA-256 of those bytes (32 bytes) · end()
//
// The reader hashes what it receives as it arrives and compares with the trailer the writer computed before
// sending; a lost, duplicated, reordered or altered byte, a truncated stream or trailing junk is a failure with
// its reason. Sockets are switched to allowHalfOpen so that one side's FIN never cuts the other side's writing.
import { createHash, randomBytes } from 'node:crypto';

const CHUNK = 64 * 1024;

/**
 * @typedef {{ ok: boolean, sent: number, received: number, expected: number, reason?: string, code?: string }} ExchangeResult
 *   `sent`/`received`: payload bytes written / received (verified on success); `expected`: the size the far side
 *   announced (-1 before its header arrived).
 */

/**
 * Runs the exchange on a stream (net.Socket or UpgradableStream). Never rejects. On failure the stream is destroyed;
 * on success it has ended both ways and closes by itself (destroyed after 5 s if it does not, or at once with
 * `destroyOnDone`).
 * @param {import('node:stream').Duplex} stream
 * @param {number} bytes payload size this side sends
 * @param {{ timeoutMs?: number, destroyOnDone?: boolean, spreadMs?: number }} [options] `spreadMs`: spread the
 *   writing over about that long (so that a stream lives long enough for, say, a relay-first upgrade mid-stream)
 * @returns {Promise<ExchangeResult>}
 */
export function exchange(stream, bytes, options = {}) {
  const timeoutMs = options.timeoutMs ?? 30_000;
  if ('allowHalfOpen' in stream) /** @type {any} */ (stream).allowHalfOpen = true;
  return new Promise((resolve) => {
    let done = false;
    let sent = 0;
    let writeDone = false;
    let readDone = false;
    /** @type {Buffer} */
    let head = Buffer.alloc(0);
    let expected = -1;
    let got = 0;
    const hash = createHash('sha256');
    /** @type {Buffer} */
    let trailer = Buffer.alloc(0);
    const finish = (/** @type {string | undefined} */ reason, /** @type {string | undefined} */ code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('close', onClose);
      stream.on('error', () => {});
      if (reason !== undefined || options.destroyOnDone) stream.destroy();
      else if (!stream.destroyed) {
        // Both directions ended: a socket closes by itself now, and an UpgradableStream once an upgrade it has
        // begun is complete. Destroying it here could cut that upgrade and reset the far side's last bytes.
        const t = setTimeout(() => stream.destroy(), 5000);
        stream.once('close', () => clearTimeout(t));
      }
      /** @type {ExchangeResult} */
      const r = { ok: reason === undefined, sent, received: got, expected };
      if (reason !== undefined) r.reason = `${reason} [read ${got}/${expected < 0 ? '?' : expected}${readDone ? ' done' : ''}, wrote ${sent}/${bytes}${writeDone ? ' flushed' : endCalled ? ' ended' : ''}]`;
      if (code !== undefined) r.code = code;
      resolve(r);
    };
    const maybeDone = () => {
      if (writeDone && readDone) finish(undefined, undefined);
    };
    const timer = setTimeout(() => finish('timeout', 'ETIMEDOUT'), timeoutMs);
    const onData = (/** @type {Buffer} */ d) => {
      let off = 0;
      if (expected < 0) {
        head = Buffer.concat([head, d]);
        if (head.length < 4) return;
        expected = head.readUInt32BE(0);
        d = head.subarray(4);
        head = Buffer.alloc(0);
      }
      const take = Math.min(d.length - off, expected - got);
      if (take > 0) {
        hash.update(d.subarray(off, off + take));
        got += take;
        off += take;
      }
      if (off < d.length) {
        trailer = Buffer.concat([trailer, d.subarray(off)]);
        if (trailer.length > 32) finish('trailing bytes after the trailer', 'ERR_DATA_CORRUPT');
      }
    };
    const onEnd = () => {
      if (expected < 0) return finish('stream ended before its header', 'ERR_DATA_TRUNCATED');
      if (got < expected || trailer.length < 32) return finish(`stream ended after ${got} of ${expected} bytes`, 'ERR_DATA_TRUNCATED');
      if (!hash.digest().equals(trailer)) return finish('SHA-256 mismatch', 'ERR_DATA_CORRUPT');
      readDone = true;
      maybeDone();
    };
    let endCalled = false;
    // The far side closes once it has verified our whole stream, so a close after everything is read and written
    // is the normal end.
    const onClose = () =>
      readDone && endCalled ? finish(undefined, undefined) : finish('closed before the exchange completed', 'ECONNRESET');
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onClose);
    stream.once('error', (/** @type {any} */ err) => finish(`stream error: ${err?.message}`, err?.code ?? 'ERR_STREAM'));
    (async () => {
      const out = createHash('sha256');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(bytes);
      if (!stream.write(len)) await drained(stream);
      const chunks = Math.max(1, Math.ceil(bytes / CHUNK));
      const pause = options.spreadMs ? options.spreadMs / chunks : 0;
      while (sent < bytes && !done) {
        const chunk = randomBytes(Math.min(CHUNK, bytes - sent));
        out.update(chunk);
        sent += chunk.length;
        if (!stream.write(chunk)) await drained(stream);
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
      }
      if (done) return;
      endCalled = true;
      stream.end(out.digest(), () => {
        writeDone = true;
        maybeDone();
      });
    })().catch((err) => finish(`write failed: ${err?.message}`, err?.code ?? 'ERR_STREAM'));
  });
}

/** @param {import('node:stream').Duplex} stream */
function drained(stream) {
  return new Promise((resolve) => {
    const go = () => {
      stream.off('drain', go);
      stream.off('close', go);
      resolve(undefined);
    };
    stream.on('drain', go);
    stream.on('close', go);
  });
}
