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
  const failWith = (err: unknown): void => fail((err as TcpPunchError).code ?? 'ERR_MALFORMED_FRAME', (err as Error).message);
  const onData = (chunk: Buffer): void => {
    let frame: RawFrame | undefined;
    try {
      decoder.write(chunk);
      frame = decoder.read();
    } catch (err) {
      return failWith(err);
    }
    if (!frame) return;
    release();
    if (frame.type === want.type) return onFrame(frame, decoder.takeRest());
    // Any other message is named as the protocol's decoder names it (or refused with the decoder's code).
    let type: string;
    try {
      type = decodeMessage(frame).type;
    } catch (err) {
      return onFail((err as TcpPunchError).code ?? 'ERR_MALFORMED_FRAME', (err as Error).message);
    }
    onFail('ERR_UNEXPECTED_MESSAGE', `Expected ${want.name}, got ${type}`);
  };
  const onClose = (): void => fail('ECONNRESET', 'The connection closed before a complete message arrived');
  const onError = (err: NodeJS.ErrnoException): void => fail(err.code ?? 'ECONNRESET', err.message);
  const deadline = want.deadlines.add(() => fail('ETIMEDOUT', `No complete message within ${want.deadlines.durationMs} ms`));
  if (socket.destroyed || socket.readableEnded) return onClose();
  socket.on('data', onData);
  socket.on('end', onClose);
  socket.on('close', onClose);
  socket.on('error', onError);
}
