/**
 * The first frame of a connection to a relay's own port (listenRelay), read with as little as a relay accepting
 * thousands of joins a second can afford: what the protocol's readMessage() does, without its promise, its own
 * timer and the 'readable' round trip through a nextTick. 'data' hands each chunk over directly; nothing is lost in
 * flowing mode because the caller takes the socket over in the same tick as the frame completes.
 */
import type { Socket } from 'node:net';

import type { TcpPunchError } from '../errors.js';
import { FrameDecoder, type RawFrame } from '../protocol/frame.js';
import { decodeMessage } from '../protocol/messages.js';
import type { Deadlines } from './deadlines.js';

/** What {@link readFirstFrame} expects. */
export interface FirstFrame {
  /** The type byte the frame must have, and the message's name for the error otherwise. */
  type: number;
  name: string;
  maxFrameSize: number;
  /** The handshake window (its length is the deadline). */
  deadlines: Deadlines;
}

/** A first frame of the wanted type and the bytes after it, or why the connection is refused. */
export type FirstFrameResult = { frame: RawFrame; rest: Buffer } | { code: string; message: string };

/**
 * Feeds a chunk to the decoder of a connection's first frame: undefined while the frame is incomplete, else the
 * frame of `want.type`, or the decoder's code (a malformed frame), or `ERR_UNEXPECTED_MESSAGE` (another message,
 * named as the protocol's decoder names it). Shared by {@link readFirstFrame} and the native listener.
 */
export function feedFirstFrame(decoder: FrameDecoder, chunk: Buffer, want: Pick<FirstFrame, 'type' | 'name'>): FirstFrameResult | undefined {
  let frame: RawFrame | undefined;
  try {
    decoder.write(chunk);
    frame = decoder.read();
  } catch (err) {
    return failure(err);
  }
  if (!frame) return undefined;
  if (frame.type === want.type) return { frame, rest: decoder.takeRest() };
  try {
    return { code: 'ERR_UNEXPECTED_MESSAGE', message: `Expected ${want.name}, got ${decodeMessage(frame).type}` };
  } catch (err) {
    return failure(err);
  }
}

/** The refusals' messages for a connection that closed, or stayed silent, before its first frame was complete. */
export const CLOSED_EARLY = 'The connection closed before a complete message arrived';
export const timedOut = (d: Deadlines): string => `No complete message within ${d.durationMs} ms`;

function failure(err: unknown): { code: string; message: string } {
  return { code: (err as TcpPunchError).code ?? 'ERR_MALFORMED_FRAME', message: (err as Error).message };
}

/**
 * Waits for one frame of `want.type` on `socket`: `onFrame` gets it and the bytes that followed it; `onFail` gets
 * the decoder's code (a malformed frame), `ERR_UNEXPECTED_MESSAGE` (another message), `ETIMEDOUT` or
 * `ECONNRESET`. Exactly one of them is called, after every listener this function added is gone.
 */
export function readFirstFrame(
  socket: Socket,
  want: FirstFrame,
  onFrame: (frame: RawFrame, rest: Buffer) => void,
  onFail: (code: string, message: string) => void,
): void {
  const decoder = new FrameDecoder({ maxFrameSize: want.maxFrameSize });
  const release = (): void => {
    want.deadlines.cancel(deadline);
    socket.off('data', onData);
    socket.off('end', onClose);
    socket.off('close', onClose);
    socket.off('error', onError);
  };
  const fail = (code: string, message: string): void => {
    release();
    onFail(code, message);
  };
  const onData = (chunk: Buffer): void => {
    const r = feedFirstFrame(decoder, chunk, want);
    if (r === undefined) return;
    release();
    if ('frame' in r) onFrame(r.frame, r.rest);
    else onFail(r.code, r.message);
  };
  const onClose = (): void => fail('ECONNRESET', CLOSED_EARLY);
  const onError = (err: NodeJS.ErrnoException): void => fail(err.code ?? 'ECONNRESET', err.message);
  const deadline = want.deadlines.add(() => fail('ETIMEDOUT', timedOut(want.deadlines)));
  if (socket.destroyed || socket.readableEnded) return onClose();
  socket.on('data', onData);
  socket.on('end', onClose);
  socket.on('close', onClose);
  socket.on('error', onError);
}
