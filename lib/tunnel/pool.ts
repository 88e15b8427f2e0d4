/**
 * A small pool of spare connections to one peer, dialled (and their tunnel handshake run) ahead of need and
 * refilled in the background, so that a new local client does not wait for a full punch (as rathole pre-opens
 * its data channels).
 *
 * A spare that dies while it waits is dropped at once: the pool reads every spare, so it sees its end or reset,
 * and it listens for the relay's `relay-end` of a relayed one. Idle spares are pinged (wire.ts PING/PONG) every
 * `keepaliveMs`: the traffic keeps a relay from ending them for idleness, and a spare that stops answering is
 * dropped. When the relay still ends one for idleness, the pool learns that the relay's idle limit is shorter
 * than its interval and pings three times as often as that spare lasted. A spare is handed out only if it answered
 * a ping within the last `freshMs`, or answers one now within `probeTimeoutMs`; otherwise the next spare is
 * tried, then a fresh dial.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Backoff, type BackoffOptions } from '../backoff.js';
import type { DialResult } from '../peer/types.js';
import { awaitRelayEnd } from './report.js';
import { PING, PONG } from './wire.js';

/** A dialled connection whose tunnel handshake is done: `stream` is the socket, or its TLS layer. */
export interface TunnelConnection {
  result: DialResult;
  stream: Duplex;
}

export interface PoolOptions {
  /** Spares to keep ready; 0 disables the pool (every client dials). */
  size: number;
  /** Dials one connection and runs its tunnel handshake. */
  dial: () => Promise<TunnelConnection>;
  /** Pauses after failed refills; default 100 ms doubling to 1 s, so the pool is full soon after the peer returns. */
  backoff?: BackoffOptions;
  /** Ping interval of an idle spare; default 20000 ms. */
  keepaliveMs?: number;
  /** Hand a spare over without a probe if it answered within this long; default 500 ms. */
  freshMs?: number;
  /** Deadline of the probe before a spare is handed over; default 1000 ms. */
  probeTimeoutMs?: number;
  onRefillError?: (err: Error) => void;
  /** A spare was dropped (it died, or failed a probe). */
  onDrop?: (why: string) => void;
}

/** Backoff after the service refused a spare (wrong key...): retrying fast cannot help. */
const REFUSED_BACKOFF: BackoffOptions = { minDelayMs: 5000, maxDelayMs: 60_000 };
/** The shortest ping interval learnt from a relay's idle limit. */
const MIN_KEEPALIVE_MS = 100;

class Spare {
  lastSeen = Date.now();
  /** Resolves the pending ping's waiters when its PONG arrives (true) or the spare dies (false). */
  waiters: ((alive: boolean) => void)[] = [];
  pinged = false;
  dead = false;
  timer: NodeJS.Timeout | undefined;
  detach: () => void = () => {};
  constructor(readonly conn: TunnelConnection) {}
}

export class ConnectionPool {
  readonly #opts: PoolOptions;
  readonly #spares: Spare[] = [];
  readonly #backoff: Backoff;
  readonly #refusedBackoff = new Backoff(REFUSED_BACKOFF);
  #keepaliveMs: number;
  #dialing = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: PoolOptions) {
    this.#opts = options;
    this.#backoff = new Backoff(options.backoff ?? { minDelayMs: 100, maxDelayMs: 1000 });
    this.#keepaliveMs = options.keepaliveMs ?? 20_000;
  }

  /** Spares ready now. */
  get ready(): number {
    return this.#spares.length;
  }

  /** The ping interval in use (shortened when a relay's idle limit ended a spare). */
  get keepaliveMs(): number {
    return this.#keepaliveMs;
  }

  /** Starts filling the pool. */
  start(): void {
    this.#refill();
  }

  /** Refills now, with the shortest backoff again: the peer (or the server) is back. */
  kick(): void {
    this.#backoff.reset();
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#refill();
  }

  /** A spare known to be alive if there is one (and a refill starts), else a fresh dial. */
  async take(): Promise<{ conn: TunnelConnection; fromPool: boolean }> {
    let spare: Spare | undefined;
    while ((spare = this.#spares.shift()) !== undefined) {
      this.#refill();
      if (spare.dead) continue;
      if (await this.#alive(spare)) {
        spare.detach();
        return { conn: spare.conn, fromPool: true };
      }
      this.#drop(spare, 'it did not answer a ping in time');
    }
    this.#refill();
    return { conn: await this.#opts.dial(), fromPool: false };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const s of this.#spares.splice(0)) this.#drop(s, 'the pool closed', false);
  }

  #refill(): void {
    if (this.#closed || this.#timer) return;
    while (this.#spares.length + this.#dialing < this.#opts.size) {
      this.#dialing++;
      this.#opts.dial().then(
        (conn) => {
          this.#dialing--;
          if (this.#closed) return void conn.stream.destroy();
          this.#backoff.reset();
          this.#refusedBackoff.reset();
          this.#add(conn);
        },
        (err: Error) => {
          this.#dialing--;
          if (this.#closed) return;
          this.#opts.onRefillError?.(err);
          if (this.#timer) return;
          // Back off so an unreachable peer is not dialled in a tight loop; a refusal waits much longer.
          const delay = (err as { refused?: boolean }).refused ? this.#refusedBackoff.next() : this.#backoff.next();
          this.#timer = setTimeout(() => {
            this.#timer = undefined;
            this.#refill();
          }, delay);
        },
      );
    }
  }

  #add(conn: TunnelConnection): void {
    const spare = new Spare(conn);
    const { stream, result } = conn;
    stream.on('error', () => {});
    const raw = result.socket;
    if (raw instanceof Socket) raw.setKeepAlive(true, 15_000);
    // Reading the spare is what lets the pool see its FIN or RST; the only byte the other side sends is PONG.
    const onReadable = (): void => {
      let b: Buffer | null;
      while (!spare.dead && (b = stream.read(1) as Buffer | null) !== null) {
        if (b[0] !== PONG) return this.#drop(spare, 'it sent a byte out of turn');
        spare.lastSeen = Date.now();
        spare.pinged = false;
        for (const w of spare.waiters.splice(0)) w(true);
      }
    };
    const onEnd = (): void => this.#drop(spare, 'the other side closed it');
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    spare.detach = () => {
      clearTimeout(spare.timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
    };
    result.relayEnd?.then(() => {
      if (this.#spares.includes(spare)) this.#drop(spare, 'the relay ended it');
    });
    this.#schedulePing(spare);
    this.#spares.push(spare);
  }

  #schedulePing(spare: Spare): void {
    clearTimeout(spare.timer);
    spare.timer = setTimeout(() => {
      if (spare.dead) return;
      // The previous ping is still unanswered after a whole interval: the path is gone.
      if (spare.pinged) return this.#drop(spare, 'it stopped answering pings');
      this.#ping(spare);
      this.#schedulePing(spare);
    }, this.#keepaliveMs);
  }

  #ping(spare: Spare): void {
    if (spare.pinged) return;
    spare.pinged = true;
    spare.conn.stream.write(Buffer.from([PING]));
  }

  /** True if the spare answered recently, or answers a ping within the probe deadline. */
  #alive(spare: Spare): Promise<boolean> {
    const stream = spare.conn.stream;
    if (stream.destroyed || stream.readableEnded || !stream.writable) return Promise.resolve(false);
    if (!spare.pinged && Date.now() - spare.lastSeen < (this.#opts.freshMs ?? 500)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), this.#opts.probeTimeoutMs ?? 1000);
      const done = (alive: boolean): void => {
        clearTimeout(timer);
        const i = spare.waiters.indexOf(done);
        if (i >= 0) spare.waiters.splice(i, 1);
        resolve(alive);
      };
      spare.waiters.push(done);
      this.#ping(spare);
    });
  }

  /** A spare that lasted `idleMs` without traffic was ended by the relay: ping well within that from now on. */
  #learnIdleLimit(idleMs: number): void {
    const next = Math.max(MIN_KEEPALIVE_MS, Math.floor(idleMs / 3));
    if (next >= this.#keepaliveMs) return;
    this.#keepaliveMs = next;
    for (const s of this.#spares) if (!s.dead) this.#schedulePing(s);
  }

  #drop(spare: Spare, why: string, report = true): void {
    if (spare.dead) return;
    spare.dead = true;
    spare.detach();
    for (const w of spare.waiters.splice(0)) w(false);
    spare.conn.stream.destroy();
    spare.conn.result.socket.destroy();
    const i = this.#spares.indexOf(spare);
    if (i >= 0) this.#spares.splice(i, 1);
    this.#refill();
    if (!report) return;
    const relayEnd = spare.conn.result.relayEnd;
    if (!relayEnd) return this.#opts.onDrop?.(why);
    // The relay's reset of a spare it ends can arrive before its notice saying why: wait for the notice.
    const idleMs = Date.now() - spare.lastSeen;
    void awaitRelayEnd(relayEnd).then((info) => {
      if (info?.reason === 'limit-idle') this.#learnIdleLimit(idleMs);
      this.#opts.onDrop?.(info ? `the relay ended it (${info.reason}${info.code ? ` ${info.code}` : ''})` : why);
    });
  }
}
