/**
 * A small pool of spare connections to one peer, dialled ahead of need and refilled in the background, so that a
 * new local client does not wait for a full punch (as rathole pre-opens its data channels).
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DialResult } from '../peer/types.js';

export interface PoolOptions {
  /** Spares to keep ready; 0 disables the pool (every client dials). */
  size: number;
  /** Dials one connection. */
  dial: () => Promise<DialResult>;
  /** Pause after a failed refill, doubling up to 30 s; default 500 ms. */
  retryDelayMs?: number;
  onRefillError?: (err: Error) => void;
}

interface Spare {
  result: DialResult;
  gone: boolean;
}

export class ConnectionPool {
  readonly #opts: Required<Omit<PoolOptions, 'onRefillError'>> & Pick<PoolOptions, 'onRefillError'>;
  readonly #spares: Spare[] = [];
  #dialing = 0;
  #closed = false;
  #delay: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: PoolOptions) {
    this.#opts = { retryDelayMs: 500, ...options };
    this.#delay = this.#opts.retryDelayMs;
  }

  /** Spares ready now. */
  get ready(): number {
    return this.#spares.length;
  }

  /** Starts filling the pool. */
  start(): void {
    this.#refill();
  }

  /** A ready spare if there is one (and a refill starts), else a fresh dial. */
  async take(): Promise<{ result: DialResult; fromPool: boolean }> {
    while (this.#spares.length > 0) {
      const spare = this.#spares.shift()!;
      if (spare.gone) continue;
      spare.result.socket.removeAllListeners('close');
      this.#refill();
      return { result: spare.result, fromPool: true };
    }
    this.#refill();
    return { result: await this.#opts.dial(), fromPool: false };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const s of this.#spares.splice(0)) s.result.socket.destroy();
  }

  #refill(): void {
    if (this.#closed || this.#timer) return;
    while (this.#spares.length + this.#dialing < this.#opts.size) {
      this.#dialing++;
      this.#opts.dial().then(
        (result) => {
          this.#dialing--;
          if (this.#closed) {
            result.socket.destroy();
            return;
          }
          this.#delay = this.#opts.retryDelayMs;
          this.#add(result);
        },
        (err: Error) => {
          this.#dialing--;
          if (this.#closed) return;
          this.#opts.onRefillError?.(err);
          // Back off so an unreachable peer is not dialled in a tight loop.
          this.#timer = setTimeout(() => {
            this.#timer = undefined;
            this.#refill();
          }, this.#delay);
          this.#delay = Math.min(this.#delay * 2, 30_000);
        },
      );
    }
  }

  #add(result: DialResult): void {
    const spare: Spare = { result, gone: false };
    const socket: Socket | Duplex = result.socket;
    socket.on('error', () => {});
    if (socket instanceof Socket) socket.setKeepAlive(true, 15_000);
    // A spare that dies while waiting is dropped and replaced.
    socket.once('close', () => {
      spare.gone = true;
      const i = this.#spares.indexOf(spare);
      if (i >= 0) this.#spares.splice(i, 1);
      this.#refill();
    });
    this.#spares.push(spare);
  }
}
