/**
 * Messages over a socket: {@link FramedSocket} for long-lived connections (control, observe) and
 * {@link readMessage} for reading exactly one message and then giving the socket back untouched.
 *
 * Both read through the 'readable' event, so when they let go of a socket it is left in its initial mode: the
 * next owner's 'data' listener or `read()` sees every byte that followed the last frame (those are unshifted).
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

import { TcpPunchError, AbortError } from '../errors.js';
import { truncateUtf8 } from './fields.js';
import { REPORT_COALESCE_MS } from './constants.js';
import { FIRST_VERSION, FrameDecoder, PROTOCOL_VERSION } from './frame.js';
import { decodeMessage, encodeErrorAs, encodeMessage } from './messages.js';
import type { Message } from './messages.js';

/** Options of a {@link FramedSocket}. */
export interface FramedSocketOptions {
  /** Largest accepted frame body; default 4096. */
  maxFrameSize?: number;
  /** How long a failed or ended connection may linger for the far side to read the last frame; default 1000 ms. */
  lingerMs?: number;
}

/** Events of a {@link FramedSocket}. */
export interface FramedSocketEvents {
  /** A valid message arrived. */
  message: [msg: Message];
  /** Undecodable input arrived: an `error` frame with the error's code has been sent and the socket is closing. */
  'protocol-error': [err: TcpPunchError];
  /** The socket closed (emitted once; not emitted after `detach()`). */
  close: [err: Error | undefined];
}

/**
 * A socket speaking the frame protocol. Invalid input never throws: the far side gets an `error` frame carrying
 * the decoder's code and the connection is closed, as the protocol requires.
 */
export class FramedSocket extends EventEmitter<FramedSocketEvents> {
  readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly lingerMs: number;
  private state: 'open' | 'closing' | 'closed' | 'detached' = 'open';
  private lastError: Error | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Frames of {@link FramedSocket.report}, written with the next message or when {@link reportTimer} fires. */
  private reports: Buffer[] = [];
  private reportTimer: NodeJS.Timeout | undefined;
  private readonly flushReports = (): void => {
    this.reportTimer = undefined;
    if (this.state === 'open' && this.reports.length > 0) this.socket.write(this.takeReports());
  };
  private readonly onReadable = (): void => this.pump();
  private readonly onData = (chunk: Buffer): void => this.take(chunk);
  /** Reading with 'data' events (see {@link FramedSocket.flow}) instead of 'readable' + read(). */
  private flowing = false;
  private readonly onSocketError = (err: Error): void => {
    this.lastError ??= err;
  };
  private readonly onSocketClose = (): void => this.closed();

  constructor(socket: Socket, options: FramedSocketOptions = {}) {
    super();
    this.socket = socket;
    this.decoder = new FrameDecoder({ maxFrameSize: options.maxFrameSize });
    this.lingerMs = options.lingerMs ?? 1000;
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    socket.on('readable', this.onReadable);
    if (socket.destroyed) queueMicrotask(() => this.closed());
  }

  /** True until the connection starts closing. */
  get open(): boolean {
    return this.state === 'open';
  }

  /** Sends one message; returns false (and sends nothing) once the connection is closing. */
  send(msg: Message): boolean {
    if (this.state !== 'open') return false;
    this.socket.write(this.withReports(encodeMessage(msg)));
    return true;
  }

  /**
   * Sends a message nobody waits for (an outcome reported after the fact): it is held for up to
   * {@link REPORT_COALESCE_MS} and written together with whatever is sent meanwhile, in order. Several reports of
   * one moment (a dial's result, then the release of its socket, closed at once) then reach the far side in one
   * segment and cost it one read instead of several. False (nothing queued) once the connection is closing.
   */
  report(msg: Message): boolean {
    if (this.state !== 'open') return false;
    this.reports.push(encodeMessage(msg));
    if (!this.reportTimer) {
      this.reportTimer = setTimeout(this.flushReports, REPORT_COALESCE_MS);
      this.reportTimer.unref();
    }
    return true;
  }

  /**
   * Sends an `error` frame with `code`, then closes the connection (ignoring further input). `version` frames it for
   * a far side that speaks another protocol version (the `error` layout is the same in all of them).
   */
  fail(code: string, message: string, version?: number): void {
    if (this.state !== 'open') return;
    const error = { type: 'error', code, message: truncateUtf8(message, 256) } as const;
    const frame = version === undefined ? safeEncode(error) : encodeErrorAs(version, error);
    this.state = 'closing';
    this.dropReports(); // the connection failed: nobody will act on them
    this.lastError ??= new TcpPunchError(code, message);
    this.finish(frame);
  }

  /** Ends the connection after flushing, optionally with a last message. */
  end(last?: Message): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.finish(this.withReports(last ? safeEncode(last) : undefined));
  }

  /** Destroys the socket at once. */
  destroy(err?: Error): void {
    if (this.state === 'detached') return;
    if (err) this.lastError ??= err;
    this.socket.destroy();
  }

  /**
   * Reads with 'data' events from now on: each chunk is decoded as it arrives, without the 'readable' event's
   * deferral (a nextTick) and the read() calls around it, which cost more than the decoding of a small control
   * message. For a connection that stays framed for good (a registered control connection): after flow(),
   * {@link FramedSocket.detach} leaves the socket paused, not in its initial mode.
   */
  flow(): void {
    if (this.flowing || this.state === 'detached') return;
    this.flowing = true;
    this.socket.removeListener('readable', this.onReadable);
    this.socket.on('data', this.onData);
  }

  /**
   * Stops reading and lets go of the socket without closing it: returns the bytes received after the last
   * message (the caller decides whether to `unshift` them). No more events are emitted.
   */
  detach(): Buffer {
    // Queued reports precede whatever the next owner writes.
    if (this.state === 'open' && this.reports.length > 0) this.socket.write(this.takeReports());
    this.dropReports();
    this.state = 'detached';
    clearTimeout(this.lingerTimer);
    if (this.flowing) this.socket.pause().removeListener('data', this.onData);
    this.socket.removeListener('readable', this.onReadable);
    this.socket.removeListener('error', this.onSocketError);
    this.socket.removeListener('close', this.onSocketClose);
    return this.decoder.error ? Buffer.alloc(0) : this.decoder.takeRest();
  }

  private dropReports(): void {
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    this.reports = [];
  }

  /** `frame` with the queued reports before it, in one buffer (undefined when there is neither). */
  private withReports<F extends Buffer | undefined>(frame: F): Buffer | F {
    return this.reports.length > 0 ? this.takeReports(frame) : frame;
  }

  /** The queued reports (then `frame`, if any) as one buffer; the queue is left empty. */
  private takeReports(frame?: Buffer): Buffer {
    const frames = this.reports;
    this.dropReports();
    if (frame) frames.push(frame);
    return frames.length === 1 ? frames[0]! : Buffer.concat(frames);
  }

  private finish(frame: Buffer | undefined): void {
    const s = this.socket;
    if (frame && !s.destroyed) s.end(frame);
    else s.end();
    this.lingerTimer = setTimeout(() => s.destroy(), this.lingerMs);
    this.lingerTimer.unref?.();
  }

  private pump(): void {
    let chunk: Buffer | null;
    while ((chunk = this.socket.read() as Buffer | null) !== null) this.queue(chunk);
    this.decode();
  }

  /** A chunk from a 'data' event. */
  private take(chunk: Buffer): void {
    this.queue(chunk);
    this.decode();
  }

  private queue(chunk: Buffer): void {
    if (this.state !== 'open') return; // drain and discard while closing
    try {
      this.decoder.write(chunk);
    } catch {
      // already failed; discard
    }
  }

  /** Emits every complete message buffered, until one fails or the connection starts closing. */
  private decode(): void {
    while (this.state === 'open') {
      let msg: Message;
      try {
        const frame = this.decoder.read();
        if (!frame) return;
        msg = decodeMessage(frame);
      } catch (err) {
        const e = asCoded(err);
        // A far side of another version can still read an error frame of its own version.
        const theirs = e.code === 'ERR_UNSUPPORTED_VERSION' ? (e as { version?: number }).version : undefined;
        this.fail(e.code, e.message, theirs !== undefined && theirs >= FIRST_VERSION && theirs < PROTOCOL_VERSION ? theirs : undefined);
        this.emit('protocol-error', e);
        return;
      }
      this.emit('message', msg);
    }
  }

  private closed(): void {
    if (this.state === 'closed' || this.state === 'detached') return;
    this.state = 'closed';
    clearTimeout(this.lingerTimer);
    this.dropReports();
    this.emit('close', this.lastError);
  }
}

function safeEncode(msg: Message): Buffer | undefined {
  try {
    return encodeMessage(msg);
  } catch {
    return undefined;
  }
}

function asCoded(err: unknown): TcpPunchError {
  if (err instanceof TcpPunchError) return err;
  return new TcpPunchError('ERR_MALFORMED_FRAME', 'Malformed frame', { cause: err });
}

/** Options of {@link readMessage}. */
export interface ReadMessageOptions {
  maxFrameSize?: number;
  /** Deadline for the whole message; rejects with code `ETIMEDOUT`. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Reads exactly one message from a socket and returns; bytes that arrived after it are unshifted back into the
 * socket. Rejects with the decoder's code on bad input, `ETIMEDOUT`, `ABORT_ERR`, or `ECONNRESET` if the socket
 * closes first. It does not close the socket in any case.
 */
export function readMessage(socket: Socket, options: ReadMessageOptions = {}): Promise<Message> {
  return new Promise((resolve, reject) => {
    const decoder = new FrameDecoder({ maxFrameSize: options.maxFrameSize });
    const { signal } = options;
    let timer: NodeJS.Timeout | undefined;
    const done = (err: Error | undefined, msg?: Message): void => {
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('close', onClose);
      socket.removeListener('end', onClose);
      socket.removeListener('error', onError);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(msg!);
    };
    const onReadable = (): void => {
      try {
        let chunk: Buffer | null;
        let frame;
        while (!(frame = decoder.read()) && (chunk = socket.read() as Buffer | null) !== null) decoder.write(chunk);
        if (!frame) return;
        const rest = decoder.takeRest();
        if (rest.length > 0) socket.unshift(rest);
        done(undefined, decodeMessage(frame));
      } catch (err) {
        done(asCoded(err));
      }
    };
    const onClose = (): void =>
      done(new TcpPunchError('ECONNRESET', 'The connection closed before a complete message arrived'));
    const onError = (err: Error): void => done(err);
    const onAbort = (): void => done(new AbortError(undefined, signal?.reason));
    if (signal?.aborted) return onAbort();
    if (socket.destroyed || socket.readableEnded) return onClose();
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(
        () => done(new TcpPunchError('ETIMEDOUT', `No complete message within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('readable', onReadable);
    socket.on('close', onClose);
    socket.on('end', onClose);
    socket.on('error', onError);
  });
}
