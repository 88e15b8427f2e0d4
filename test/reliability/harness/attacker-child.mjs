// @ts-check
// The attacker: hostile clients of the rendezvous server, in a process of their own so that thousands of sockets
// never count against the server's or the test's descriptors. Runs the compiled library's codecs (dist/).
// Every attack is bounded in count and in time, and reports what the server answered.
//
//   node attacker-child.mjs '{}'
//
// Requests (answered as { type: 'reply', seq, ...result }):
//   half-open   { port, ips, perIp, modes, durationMs, reopen }       idle / partial-header / half-closed sockets
//   slowloris   { port, ips, perIp, kinds, byteIntervalMs, durationMs } every handshake dribbled a byte at a time
//   register-flood { port, ips, count, concurrency, idPrefix, ids?, hold, proof }
//   connect-flood  { port, ips, attackers, framesPerSec, durationMs, targets }
//   bad-relay   { port, ips, count, concurrency, leaked }
//   non-reader  { port, ip, durationMs }                              floods requests, never reads a reply
//   relay-hog   { server, pairs, durationMs, chunk }                   relayed sessions whose reader reads nothing
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const { encodeMessage, decodeMessage } = await import('../../../dist/protocol/messages.js');
const { FrameDecoder, encodeFrame, PROTOCOL_VERSION } = await import('../../../dist/protocol/frame.js');
const { encodeRelayFrame } = await import('../../../dist/relay/frames.js');
const { Peer } = await import('../../../dist/index.js');

const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};

/** @param {Record<string, number>} h @param {string} k */
const bump = (h, k, n = 1) => (h[k] = (h[k] ?? 0) + n);

/** @param {number[]} xs */
function pct(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (/** @type {number} */ p) => (s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]) : null);
  return { n: s.length, p50: q(0.5), p90: q(0.9), max: s.length ? Math.round(s[s.length - 1]) : null };
}

/**
 * Connects from `ip`; resolves the socket or the error code.
 * @param {number} port @param {string} ip
 * @returns {Promise<{ sock?: import('node:net').Socket, error?: string }>}
 */
function open(port, ip) {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port, localAddress: ip, allowHalfOpen: true });
    const onError = (/** @type {any} */ err) => {
      sock.destroy();
      resolve({ error: err.code ?? 'ERR' });
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      sock.on('error', () => {});
      resolve({ sock });
    });
  });
}

/**
 * Reads what the server sends until the socket closes: resolves the code of the first `error` frame (or null),
 * the other message types seen, and how long the connection lived.
 * @param {import('node:net').Socket} sock
 */
function watch(sock) {
  const t0 = performance.now();
  const dec = new FrameDecoder({ maxFrameSize: 65535 });
  /** @type {string | null} */
  let code = null;
  /** @type {string[]} */
  const types = [];
  let broken = false;
  sock.on('data', (/** @type {Buffer} */ d) => {
    if (broken) return;
    try {
      dec.write(d);
      for (let f = dec.read(); f; f = dec.read()) {
        const m = decodeMessage(f);
        types.push(m.type);
        if (m.type === 'error' && code === null) code = m.code;
      }
    } catch {
      broken = true;
    }
  });
  // The server's FIN ends the connection for us too (the sockets are allowHalfOpen so that one mode can half-close).
  sock.once('end', () => sock.destroy());
  return new Promise((resolve) => sock.once('close', () => resolve({ code, types, aliveMs: performance.now() - t0 })));
}

/**
 * Waits for the next message of one of `types` on a socket watched by a FrameDecoder, or the close.
 * @param {import('node:net').Socket} sock @param {number} timeoutMs
 * @returns {Promise<any>}
 */
function nextMessage(sock, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const dec = /** @type {any} */ (sock).__dec ?? (/** @type {any} */ (sock).__dec = new FrameDecoder({ maxFrameSize: 65535 }));
    const queue = /** @type {any[]} */ ((/** @type {any} */ (sock).__queue ??= []));
    const done = (/** @type {any} */ m) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onClose);
      resolve(m);
    };
    const onData = (/** @type {Buffer} */ d) => {
      try {
        dec.write(d);
        for (let f = dec.read(); f; f = dec.read()) queue.push(decodeMessage(f));
      } catch {
        return done({ type: 'garbled' });
      }
      if (queue.length) done(queue.shift());
    };
    const onClose = () => done(queue.shift() ?? { type: 'closed' });
    if (queue.length) return resolve(queue.shift());
    const timer = setTimeout(() => done({ type: 'timeout' }), timeoutMs);
    sock.on('data', onData);
    sock.once('close', onClose);
  });
}

const hello = (/** @type {string} */ id) => encodeMessage({ type: 'hello', id, nonce: randomBytes(16), software: 'attacker', private: [], warm: false });

/**
 * Registers `id` on an open server (no token: a first registration); resolves the socket or the refusal.
 * @param {number} port @param {string} ip @param {string} id @param {'empty' | 'random'} proof
 */
async function register(port, ip, id, proof = 'empty') {
  const { sock, error } = await open(port, ip);
  if (!sock) return { error };
  sock.write(hello(id));
  const ch = await nextMessage(sock);
  if (ch.type !== 'challenge') {
    sock.destroy();
    return { error: ch.type === 'error' ? ch.code : ch.type };
  }
  sock.write(encodeMessage({ type: 'auth', proof: proof === 'empty' ? new Uint8Array(0) : randomBytes(32) }));
  const w = await nextMessage(sock);
  if (w.type !== 'welcome') {
    sock.destroy();
    return { error: w.type === 'error' ? w.code : w.type };
  }
  return { sock, welcome: w };
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pool(/** @type {any[]} */ items, /** @type {number} */ n, /** @type {(x: any, i: number) => Promise<void>} */ fn) {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) {
        const k = i++;
        await fn(items[k], k);
      }
    }),
  );
}

const attacks = {
  /** Connections that never complete a handshake. */
  async 'half-open'(/** @type {any} */ p) {
    const end = performance.now() + p.durationMs;
    const codes = /** @type {Record<string, number>} */ ({});
    const connectErrors = /** @type {Record<string, number>} */ ({});
    /** @type {number[]} */
    const alive = [];
    let opened = 0;
    let live = 0;
    let peak = 0;
    /** @type {Set<import('node:net').Socket>} */
    const socks = new Set();
    const slot = async (/** @type {string} */ ip, /** @type {string} */ mode) => {
      for (let round = 0; round < 1000; round++) {
        const { sock, error } = await open(p.port, ip);
        if (!sock) {
          bump(connectErrors, error ?? 'ERR');
          if (performance.now() > end) return;
          await sleep(200);
          continue;
        }
        opened++;
        live++;
        peak = Math.max(peak, live);
        socks.add(sock);
        if (mode === 'partial') sock.write(Buffer.from([0x54, 0x50, PROTOCOL_VERSION]));
        if (mode === 'half-closed') sock.end();
        const r = /** @type {any} */ (await watch(sock));
        socks.delete(sock);
        live--;
        bump(codes, `${mode}:${r.code ?? 'closed'}`);
        if (r.code === null || r.code === 'ERR_HANDSHAKE_TIMEOUT') alive.push(r.aliveMs);
        // Half-closed sockets are closed by the server at once: reopening them would only spend the IP's
        // connection-rate budget, so they are one-shot.
        if (!p.reopen || mode === 'half-closed' || performance.now() > end) return;
        // Refused (limits): back off a little; reaped by the deadline: come straight back.
        await sleep(r.code === 'ERR_HANDSHAKE_TIMEOUT' ? 5 : 200);
      }
    };
    const slots = [];
    for (const ip of p.ips) for (let k = 0; k < p.perIp; k++) slots.push(slot(ip, p.modes[k % p.modes.length]));
    const finished = await Promise.race([Promise.all(slots).then(() => true), sleep(p.durationMs + (p.settleMs ?? 20_000)).then(() => false)]);
    // Connections the server never saw: the kernel completed them, but its accept queue (the listen backlog)
    // was full, so it dropped the client's final ACK and the client believes in a connection that does not exist.
    const neverAccepted = socks.size;
    for (const s of socks) s.destroy();
    return { opened, peak, codes, connectErrors, aliveMs: pct(alive), neverAccepted, finished };
  },

  /** Every handshake, a byte at a time. */
  async slowloris(/** @type {any} */ p) {
    const end = performance.now() + p.durationMs;
    const byKind = /** @type {Record<string, { codes: Record<string, number>, alive: number[], completed: number }>} */ ({});
    const one = async (/** @type {string} */ ip, /** @type {string} */ kind, /** @type {number} */ n) => {
      const k = (byKind[kind] ??= { codes: {}, alive: [], completed: 0 });
      let sock;
      /** @type {Buffer} */
      let frame;
      if (kind === 'registered') {
        const r = await register(p.port, ip, `slow-${process.pid}-${n}`);
        if (!r.sock) return bump(k.codes, `register:${r.error}`);
        sock = r.sock;
        // A registered peer that starts a frame and never finishes it: a partial frame is no activity.
        frame = encodeMessage({ type: 'ping', seq: 1, rttUs: 0 }).subarray(0, 5);
      } else {
        const o = await open(p.port, ip);
        if (!o.sock) return bump(k.codes, `connect:${o.error}`);
        sock = o.sock;
        if (kind === 'auth') {
          sock.write(hello(`slow-auth-${process.pid}-${n}`));
          const ch = await nextMessage(sock);
          if (ch.type !== 'challenge') return bump(k.codes, `hello:${ch.type}`);
          frame = encodeMessage({ type: 'auth', proof: randomBytes(32) });
        } else if (kind === 'hello') frame = hello(`slow-hello-${process.pid}-${n}`);
        else if (kind === 'observe')
          frame = encodeMessage({ type: 'observe', coordId: randomBytes(16), attempt: 1, token: randomBytes(16), private: [{ host: '10.0.0.1', port: 1000 }], mapping: 'unknown', filtering: 'unknown' });
        else frame = encodeRelayFrame('relay-join', { token: `tp1.${randomBytes(200).toString('base64url')}.${randomBytes(32).toString('base64url')}` });
      }
      const t0 = performance.now();
      const closed = watch(sock);
      let isClosed = false;
      void closed.then(() => (isClosed = true));
      const bytes = kind === 'registered' ? frame.length : frame.length;
      for (let i = 0; i < bytes && !isClosed && performance.now() < end + 60_000; i++) {
        sock.write(frame.subarray(i, i + 1));
        await sleep(p.byteIntervalMs);
      }
      if (!isClosed) k.completed++;
      const r = /** @type {any} */ (await Promise.race([closed, sleep(90_000).then(() => ({ code: 'still-open', aliveMs: performance.now() - t0 }))]));
      sock.destroy();
      bump(k.codes, r.code ?? 'closed');
      k.alive.push(performance.now() - t0);
    };
    const jobs = [];
    let n = 0;
    for (const ip of p.ips) for (let i = 0; i < p.perIp; i++) for (const kind of p.kinds) jobs.push(one(ip, kind, n++));
    await Promise.all(jobs);
    const out = /** @type {Record<string, any>} */ ({});
    for (const [kind, v] of Object.entries(byKind)) out[kind] = { codes: v.codes, completedFrame: v.completed, aliveMs: pct(v.alive) };
    return { connections: n, byKind: out };
  },

  /** Many registrations: fresh ids, or ids that are held (takeover attempts). */
  async 'register-flood'(/** @type {any} */ p) {
    const t0 = performance.now();
    const codes = /** @type {Record<string, number>} */ ({});
    /** @type {import('node:net').Socket[]} */
    const held = [];
    const items = Array.from({ length: p.count }, (_, i) => i);
    await pool(items, p.concurrency, async (i) => {
      if (performance.now() - t0 > p.maxDurationMs) return bump(codes, 'skipped');
      const ip = p.ips[i % p.ips.length];
      const id = p.ids ? p.ids[i % p.ids.length] : `${p.idPrefix}-${i}`;
      const r = await register(p.port, ip, id, p.proof ?? 'empty');
      if (r.sock) {
        bump(codes, 'welcome');
        if (p.hold) held.push(r.sock);
        else r.sock.destroy();
      } else bump(codes, r.error ?? 'ERR');
    });
    const ms = performance.now() - t0;
    for (const s of held) s.destroy();
    return { codes, ms: Math.round(ms), perSec: Math.round((p.count / ms) * 1000) };
  },

  /** Registered attackers sending `connect` requests as fast as allowed (or faster). */
  async 'connect-flood'(/** @type {any} */ p) {
    const regs = [];
    for (let i = 0; i < p.attackers; i++) regs.push(await register(p.port, p.ips[i % p.ips.length], `flood-${process.pid}-${i}`));
    const replies = /** @type {Record<string, number>} */ ({});
    const cut = /** @type {Record<string, number>} */ ({});
    let sent = 0;
    const end = performance.now() + p.durationMs;
    await Promise.all(
      regs.map(async (r, i) => {
        if (!r.sock) return bump(cut, `register:${r.error}`);
        const sock = r.sock;
        const rate = p.framesPerSec[i % p.framesPerSec.length];
        const closed = watchTypes(sock, replies);
        let isClosed = false;
        let ours = false;
        void closed.then((code) => {
          isClosed = true;
          if (!ours) bump(cut, code ?? 'closed');
        });
        let reqId = 1;
        while (!isClosed && performance.now() < end) {
          const batch = [];
          for (let k = 0; k < Math.max(1, Math.round(rate / 10)); k++) {
            const t = p.targets[(reqId + i) % p.targets.length];
            const target = t === '$self' ? `flood-${process.pid}-${i}` : t === '$next' ? `flood-${process.pid}-${(i + 1) % p.attackers}` : t;
            batch.push(encodeMessage({ type: 'connect', reqId: reqId++, target, path: reqId % 3 === 0 ? 'relay' : 'direct', timeoutMs: 0, link: new Uint8Array(16) }));
          }
          sock.write(Buffer.concat(batch));
          sent += batch.length;
          await sleep(100);
        }
        if (!isClosed) {
          bump(cut, 'open-at-end');
          ours = true;
        }
        sock.destroy();
      }),
    );
    return { attackers: p.attackers, sent, replies, cut };
  },

  /** Relay joins with every kind of bad token. */
  async 'bad-relay'(/** @type {any} */ p) {
    const claims = (/** @type {any} */ c) => Buffer.from(JSON.stringify(c)).toString('base64url');
    const forged = (/** @type {any} */ c) => `tp1.${claims(c)}.${randomBytes(32).toString('base64url')}`;
    const variants = /** @type {Record<string, () => Buffer>} */ ({
      random: () => encodeRelayFrame('relay-join', { token: randomBytes(40).toString('base64url') }),
      forged: () => encodeRelayFrame('relay-join', { token: forged({ sid: 'x', side: 'a', peer: 'canary-a', other: 'canary-b', exp: Date.now() + 60_000, jti: 'j' }) }),
      'forged-expired': () => encodeRelayFrame('relay-join', { token: forged({ sid: 'x', side: 'a', peer: 'a', other: 'b', exp: 1, jti: 'j' }) }),
      'malformed-body': () => encodeFrame(0x40, randomBytes(20)),
      oversize: () => encodeFrame(0x40, Buffer.concat([Buffer.from([0x04, 0x01]), Buffer.alloc(1025, 0x41)])),
      empty: () => encodeRelayFrame('relay-join', { token: '' }),
      'join-then-data': () => Buffer.concat([encodeRelayFrame('relay-join', { token: forged({ sid: 'y', side: 'b', peer: 'a', other: 'b', exp: Date.now() + 60_000, jti: 'k' }) }), Buffer.from('payload')]),
    });
    if (p.leaked?.length) {
      let k = 0;
      variants['leaked-replay'] = () => encodeRelayFrame('relay-join', { token: p.leaked[k++ % p.leaked.length] });
      variants['leaked-tampered'] = () => {
        const t = p.leaked[k++ % p.leaked.length];
        const [a, b, c] = t.split('.');
        const payload = JSON.parse(Buffer.from(b, 'base64url').toString());
        return encodeRelayFrame('relay-join', { token: `${a}.${claims({ ...payload, exp: payload.exp + 1 })}.${c}` });
      };
    }
    const names = Object.keys(variants);
    const codes = /** @type {Record<string, Record<string, number>>} */ ({});
    const items = Array.from({ length: p.count }, (_, i) => i);
    await pool(items, p.concurrency, async (i) => {
      const name = names[i % names.length];
      const { sock, error } = await open(p.port, p.ips[i % p.ips.length]);
      const c = (codes[name] ??= {});
      if (!sock) return bump(c, `connect:${error}`);
      const closed = watch(sock);
      sock.write(variants[name]());
      const r = /** @type {any} */ (await Promise.race([closed, sleep(15_000).then(() => ({ code: 'still-open' }))]));
      sock.destroy();
      bump(c, r.code ?? 'closed');
    });
    return { count: p.count, codes };
  },

  /** A registered peer that floods requests and never reads the answers. */
  async 'non-reader'(/** @type {any} */ p) {
    const r = await register(p.port, p.ip, `nonreader-${process.pid}-${p.n ?? 0}`);
    if (!r.sock) return { error: r.error };
    const sock = r.sock;
    // No 'data' listener from here on: Node reads at most its high-water mark, then the kernel's window closes.
    sock.removeAllListeners('data');
    sock.pause();
    const frame = encodeMessage({ type: 'connect', reqId: 1, target: 'nobody-here', path: 'direct', timeoutMs: 0, link: new Uint8Array(16) });
    const batch = Buffer.concat(Array(p.batch ?? 500).fill(frame));
    let sentFrames = 0;
    let closedAfterMs = null;
    let error = null;
    let isClosed = false;
    const t0 = performance.now();
    sock.once('close', () => {
      isClosed = true;
      closedAfterMs = Math.round(performance.now() - t0);
    });
    sock.on('error', (/** @type {any} */ e) => (error ??= e.code));
    while (!isClosed && performance.now() - t0 < p.durationMs) {
      const ok = sock.write(batch);
      sentFrames += p.batch ?? 500;
      if (!ok) {
        await Promise.race([
          new Promise((resolve) => {
            sock.once('drain', resolve);
            sock.once('close', resolve);
          }),
          sleep(250),
        ]);
      }
      await sleep(p.pauseMs ?? 0);
    }
    const open = !isClosed;
    sock.destroy();
    return { sentFrames, sentMB: Math.round((sentFrames * frame.length) / 1e5) / 10, closedAfterMs, error, openAtEnd: open };
  },

  /** Relayed sessions whose receiving side reads nothing while the sender writes as fast as it can. */
  async 'relay-hog'(/** @type {any} */ p) {
    const results = [];
    /** @type {any[]} */
    const peers = [];
    try {
      await Promise.all(
        Array.from({ length: p.pairs }, async (_, i) => {
          const a = await Peer.connect({ server: p.server, id: `hog-a-${i}`, localAddress: p.ips[i % p.ips.length] });
          const b = await Peer.connect({ server: p.server, id: `hog-b-${i}`, localAddress: p.ips[i % p.ips.length] });
          peers.push(a, b);
          /** @type {import('node:net').Socket[]} */
          const stalled = [];
          // The reader that reads nothing: paused, no 'data' listener, until the end.
          b.on('connection', (/** @type {any} */ s) => {
            s.on('error', () => {});
            s.pause();
            stalled.push(s);
          });
          const r = await a.dial(`hog-b-${i}`, { strategy: 'relay', timeoutMs: 15_000 });
          const s = r.socket;
          s.on('error', () => {});
          const chunk = randomBytes(p.chunk ?? 65536);
          let written = 0;
          let blockedMs = 0;
          const t0 = performance.now();
          while (performance.now() - t0 < p.durationMs && !s.destroyed) {
            if (!s.write(chunk)) {
              const tb = performance.now();
              await Promise.race([new Promise((resolve) => s.once('drain', resolve)), sleep(200)]);
              blockedMs += performance.now() - tb;
            } else written += chunk.length;
          }
          // What the sender could push before backpressure stopped it: the relay buffered none of it in memory.
          results.push({ writtenMB: Math.round(written / 1e5) / 10, blockedMs: Math.round(blockedMs), path: r.path, pendingMB: Math.round(s.writableLength / 1e5) / 10 });
          s.destroy();
          for (const x of stalled) x.destroy();
        }),
      );
    } finally {
      await Promise.all(peers.map((x) => x.close()));
    }
    return { sessions: results.length, results };
  },
};

/**
 * Watches a registered connection's replies (counting types and reject/end codes); resolves the error code it
 * was closed with (or null).
 * @param {import('node:net').Socket} sock @param {Record<string, number>} replies
 * @returns {Promise<string | null>}
 */
function watchTypes(sock, replies) {
  const dec = new FrameDecoder({ maxFrameSize: 65535 });
  /** @type {string | null} */
  let code = null;
  sock.on('data', (/** @type {Buffer} */ d) => {
    try {
      dec.write(d);
      for (let f = dec.read(); f; f = dec.read()) {
        const m = /** @type {any} */ (decodeMessage(f));
        const key = m.type === 'reject' || m.type === 'end' ? `${m.type}:${m.code}` : m.type;
        bump(replies, key);
        if (m.type === 'error') code ??= m.code;
      }
    } catch {
      bump(replies, 'garbled');
    }
  });
  sock.once('end', () => sock.destroy());
  return new Promise((resolve) => sock.once('close', () => resolve(code)));
}

process.on('message', async (/** @type {any} */ msg) => {
  const fn = /** @type {any} */ (attacks)[msg.type];
  if (!fn) return send({ type: 'reply', seq: msg.seq, error: `unknown attack ${msg.type}` });
  try {
    send({ type: 'reply', seq: msg.seq, ...(await fn(msg)) });
  } catch (err) {
    send({ type: 'reply', seq: msg.seq, error: String(/** @type {any} */ (err)?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
