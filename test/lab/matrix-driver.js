// @ts-check
/**
 * Runs the real library in a lab: the rendezvous server (server-child.mjs) on the lab's server host and one
 * Peer (peer-child.mjs) on each peer host, all driven over IPC. Used by matrix.test.ts and scenario.mjs.
 * Needs the compiled library in dist/.
 *
 *   const pair = await LibraryPair.start(lab, { punch: { a: { ttl: lab.peers.a.ttlToInternet } } });
 *   try {
 *     const r = await pair.dial('a', { strategy: 'direct', timeoutMs: 15000, bytes: 1 << 20 });
 *     // r.ok, r.path, r.attempt, r.connectMs, r.firstByteMs, r.integrity, r.attempts ...
 *   } finally {
 *     await pair.close();
 *   }
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PEER_CHILD = path.join(HERE, 'peer-child.mjs');
export const SERVER_CHILD = path.join(HERE, 'server-child.mjs');
export const SERVER_PORT = 7000;
/** The server's NAT probe ports; every peer probes its NAT there unless `opts.natProbe` is false. */
export const PROBE_PORTS = [7011, 7012];
export const SECRET = 'tcp-punch lab matrix secret';

/**
 * @typedef {import('./topology.js').Lab} Lab
 * @typedef {import('node:child_process').ChildProcess} ChildProcess
 */

/** Keeps the last `max` characters a stream printed. @param {import('node:stream').Readable | null} s */
function tail(s, max = 8192) {
  let buf = '';
  s?.setEncoding('utf8').on('data', (d) => {
    buf += d;
    if (buf.length > max) buf = buf.slice(-max);
  });
  return () => buf.trim();
}

/** An IPC child with bounded waits for its messages. */
class Child {
  /** @param {string} name @param {ChildProcess} proc */
  constructor(name, proc) {
    this.name = name;
    this.proc = proc;
    this.stderr = tail(proc.stderr);
    this.stdout = tail(proc.stdout);
    /** @type {any[]} */
    this.inbox = [];
    /** @type {{ pred: (m: any) => boolean, resolve: (m: any) => void }[]} */
    this.waiters = [];
    /** @type {((m: any) => void)[]} */
    this.listeners = [];
    this.exited = false;
    proc.on('message', (m) => {
      for (const l of this.listeners) l(m);
      const i = this.waiters.findIndex((w) => w.pred(m));
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(m);
      else this.inbox.push(m);
    });
    proc.once('exit', (code, sig) => {
      this.exited = true;
      this.exit = code ?? sig;
      for (const w of this.waiters.splice(0)) w.resolve(undefined);
    });
  }

  /** Resolves the first message matching `pred` (queued or future); rejects after `ms` or when the child exits. */
  wait(/** @type {(m: any) => boolean} */ pred, /** @type {number} */ ms, /** @type {string} */ what) {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const fail = (/** @type {string} */ why) =>
        reject(new Error(`${this.name}: ${why} waiting for ${what}${this.stderr() ? `\n--- stderr:\n${this.stderr()}` : ''}`));
      if (this.exited) return fail(`exited (${this.exit})`);
      const w = {
        pred,
        resolve: (/** @type {any} */ m) => {
          clearTimeout(timer);
          if (m === undefined) fail(`exited (${this.exit})`);
          else resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        fail(`no answer in ${ms} ms`);
      }, ms);
      this.waiters.push(w);
    });
  }

  send(/** @type {any} */ m) {
    if (!this.exited && this.proc.connected) this.proc.send(m);
  }

  /** Asks the child to close, then kills it if it does not exit within `ms`. */
  async close(ms = 3000) {
    if (this.exited) return;
    const gone = new Promise((r) => this.proc.once('exit', r));
    this.send({ type: 'close' });
    const t = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    await gone;
    clearTimeout(t);
  }
}

/** A failure of a child: a 'fatal' message fails the wait for 'ready'. @param {any} m */
const readyOrFatal = (m) => m.type === 'ready' || m.type === 'fatal';

export class LibraryPair {
  /**
   * Starts the server and both peers (ids 'a' and 'b'); resolves once both are registered.
   * @param {Lab} lab
   * @param {import('./matrix-driver.js').PairOptions} [opts]
   */
  static async start(lab, opts = {}) {
    const pair = new LibraryPair(lab, opts);
    try {
      await pair._start();
    } catch (e) {
      await pair.close();
      throw e;
    }
    return pair;
  }

  /** @param {Lab} lab @param {import('./matrix-driver.js').PairOptions} opts */
  constructor(lab, opts) {
    this.lab = lab;
    this.opts = opts;
    this.seq = 0;
    /** @type {Record<string, Child>} */
    this.peers = {};
    /** @type {Child | undefined} */
    this.server = undefined;
    if (opts.ipv6 && !lab.server.ip6) throw new Error('LibraryPair: ipv6 needs a lab built with ipv6: true');
    this.serverAddress = opts.ipv6 ? `[${lab.server.ip6}]:${SERVER_PORT}` : `${lab.server.ip}:${SERVER_PORT}`;
  }

  async _start() {
    const { lab, opts } = this;
    const readyMs = opts.readyTimeoutMs ?? 15_000;
    const host = opts.ipv6 ? lab.server.ip6 : lab.server.ip;
    const probe = opts.natProbe !== false;
    const serverOptions = { host, port: SERVER_PORT, secret: SECRET, ...(probe ? { probePorts: PROBE_PORTS } : {}), ...(opts.server ?? {}) };
    this.server = new Child('server', lab.fork('server', SERVER_CHILD, [JSON.stringify(serverOptions)]));
    const s = await this.server.wait(readyOrFatal, readyMs, 'the server to listen');
    if (s.type === 'fatal') throw new Error(`server failed to start: ${s.code} ${s.message}`);
    await Promise.all(
      /** @type {const} */ (['a', 'b']).map(async (who) => {
        const peerOptions = {
          server: this.serverAddress,
          id: who,
          secret: SECRET,
          ...(probe ? { natProbe: { ports: PROBE_PORTS } } : {}),
          ...(opts.punch?.[who] ? { punch: opts.punch[who] } : {}),
          ...(opts.peer?.[who] ?? {}),
        };
        const child = new Child(`peer ${who}`, lab.fork(who, PEER_CHILD, [JSON.stringify(peerOptions)]));
        this.peers[who] = child;
        const m = await child.wait(readyOrFatal, readyMs, `peer ${who} to register`);
        if (m.type === 'fatal') throw new Error(`peer ${who} failed to register: ${m.code} ${m.message}`);
        child.observed = m.observed;
        child.nat = m.nat;
      }),
    );
  }

  /**
   * Dials from `from` to the other peer, exchanges `bytes` both ways, and returns what happened. Never throws
   * for a failed dial (see `ok`, `error`); throws when a child stops answering.
   * @param {'a' | 'b'} from
   * @param {import('./matrix-driver.js').DialParams} [p]
   * @returns {Promise<import('./matrix-driver.js').DialRecord>}
   */
  /**
   * What a peer's NAT probe measured before it was ready (`unknown` for both without the probe).
   * @param {'a' | 'b'} who
   */
  nat(who) {
    return /** @type {Child} */ (this.peers[who]).nat;
  }

  async dial(from, p = {}) {
    const to = from === 'a' ? 'b' : 'a';
    const dialer = /** @type {Child} */ (this.peers[from]);
    const target = /** @type {Child} */ (this.peers[to]);
    const bytes = p.bytes ?? 1 << 20;
    const timeoutMs = p.timeoutMs ?? 15_000;
    const seq = ++this.seq;
    // A connection the other side got for an earlier dial that failed on the dialer's side: the Peer handed its
    // application a socket the dialer never got (counted, then dropped).
    const orphans = target.inbox.filter((m) => m.type === 'incoming').length;
    target.inbox = target.inbox.filter((m) => m.type !== 'incoming');
    const dialAt = Date.now();
    const fwd = { seed: seq * 2 + 1, bytes };
    const back = { seed: seq * 2 + 2, bytes };
    target.send({ type: 'expect', seq, bytes, seed: back.seed, expect: fwd });
    await target.wait((m) => m.type === 'expect-ok' && m.seq === seq, 5000, 'expect-ok');
    /** @type {any[]} */
    const responderAttempts = [];
    const onAttempt = (/** @type {any} */ m) => {
      if (m.type === 'attempt') responderAttempts.push(m.event);
    };
    target.listeners.push(onAttempt);
    const leaksBefore = await this.lab.leaks();
    try {
      dialer.send({ type: 'dial', seq, target: to, strategy: p.strategy, timeoutMs, bytes, seed: fwd.seed, expect: back });
      // The dial is bounded by timeoutMs, the exchange by 30 s in the child: never wait forever.
      const r = await dialer.wait((m) => m.type === 'dial-result' && m.seq === seq, timeoutMs + 45_000, `dial ${from}→${to}`);
      /** @type {any} */
      let incoming = null;
      // The other side's exchange is bounded by 30 s in the child; a connection it never got is a failed dial.
      const ours = (/** @type {any} */ m) => m.type === 'incoming' && m.at >= dialAt;
      if (r.ok) incoming = await target.wait(ours, 35_000, `the incoming side of ${from}→${to}`).catch(() => null);
      else {
        // a dial that failed on our side may still have handed the other a socket: look briefly
        await new Promise((res) => setTimeout(res, 200));
        const i = target.inbox.findIndex(ours);
        if (i >= 0) incoming = target.inbox.splice(i, 1)[0];
      }
      const leaks = (await this.lab.leaks()) - leaksBefore;
      const ok = !!r.ok && !r.error && !!incoming && !incoming.error;
      const integrity = r.ok && incoming
        ? {
            forward: r.sentBytes === incoming.recvBytes && r.sentHash === incoming.recvHash,
            backward: incoming.sentBytes === r.recvBytes && incoming.sentHash === r.recvHash,
            bytes,
            received: [incoming.recvBytes, r.recvBytes],
            firstDiff: [incoming.firstDiff, r.firstDiff],
          }
        : null;
      const initiatorAttempts = r.ok ? dialerAttempts(dialer, seq) : r.attempts;
      const won = initiatorAttempts.find((/** @type {any} */ e) => e.outcome === 'ok');
      return {
        from,
        to,
        ok: ok && !!integrity?.forward && !!integrity?.backward,
        path: r.ok ? r.result.path : 'failed',
        attempt: r.ok ? r.result.attempt : initiatorAttempts.length,
        punchAttempts: initiatorAttempts.filter((/** @type {any} */ e) => e.mode !== 'relay' && e.attempt > 0).length,
        mode: r.ok ? r.result.mode ?? null : null,
        route: won?.route ?? null,
        remote: r.ok ? r.result.remote ?? null : null,
        family: r.ok ? r.result.family ?? null : null,
        connectMs: round(r.connectMs),
        firstByteMs: r.ok ? round(r.firstByteMs) : null,
        transferMs: r.ok ? round(r.transferMs) : null,
        timings: r.ok ? r.result.timings ?? null : null,
        integrity,
        error: r.ok
          ? (r.error ?? incoming?.error ?? (incoming ? null : `${to} never got the connection (no 'connection' event within 35 s)`))
          : `${r.error.code} ${r.error.message}`,
        attempts: initiatorAttempts.map(brief),
        responderAttempts: responderAttempts.map(brief),
        leaks,
        orphans: orphans + this.lateOrphans(target, dialAt),
      };
    } finally {
      target.listeners = target.listeners.filter((l) => l !== onAttempt);
      dialer.inbox = dialer.inbox.filter((m) => m.type !== 'attempt');
      target.inbox = target.inbox.filter((m) => m.type !== 'attempt');
    }
  }

  /** Incoming connections of earlier dials that arrived during this one (their exchange took up to 30 s). */
  lateOrphans(/** @type {Child} */ target, /** @type {number} */ dialAt) {
    const late = target.inbox.filter((m) => m.type === 'incoming' && m.at < dialAt);
    target.inbox = target.inbox.filter((m) => !(m.type === 'incoming' && m.at < dialAt));
    return late.length;
  }

  /** Server counters. */
  async stats() {
    const seq = ++this.seq;
    this.server?.send({ type: 'stats', seq });
    return (await this.server?.wait((m) => m.type === 'stats' && m.seq === seq, 5000, 'stats'))?.stats;
  }

  /** Stops the peers and the server (bounded); the lab's destroy() kills whatever is left. */
  async close() {
    await Promise.all(Object.values(this.peers).map((c) => c.close()));
    await this.server?.close();
  }
}

/** The initiator's attempt events of a successful dial, taken from the dialer's inbox. @param {Child} dialer @param {number} _seq */
function dialerAttempts(dialer, _seq) {
  const evs = dialer.inbox.filter((m) => m.type === 'attempt' && m.event.role === 'initiator').map((m) => m.event);
  return evs;
}

/** @param {any} e */
function brief(e) {
  return {
    attempt: e.attempt,
    outcome: e.outcome,
    code: e.code ?? null,
    mode: e.mode ?? null,
    route: e.route ?? null,
    ms: round(e.elapsedMs),
    message: e.outcome === 'ok' ? undefined : e.message,
  };
}

/** @param {number | null | undefined} x */
function round(x) {
  return x == null ? null : Math.round(x * 10) / 10;
}
