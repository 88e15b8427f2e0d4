/**
 * The tunnel's one-byte handshake on a peer connection.
 *
 * Spare connections sit idle until a local client needs one, so the exposing side must not open a connection to
 * its service for each of them. When the connecting side hands a spare to a client it sends OPEN; the exposing side
 * connects to its service and answers ACK (then relays) or NAK (then closes). The connecting side waits for the
 * answer before it relays a byte, so OPEN is the only byte the exposing side can have received: it can hand the
 * socket to the native pump with nothing left over in JS.
 */
import type { Socket } from 'node:net';
import { TcpPunchError } from '../errors.js';

export const OPEN = 0x4f; // 'O'
export const ACK = 0x41; // 'A'
export const NAK = 0x4e; // 'N'

/**
 * Reads the first byte of `socket` and resolves it with every byte that came after it (possibly none).
 * Rejects with `ECONNRESET` if the socket ends or closes first, `ETIMEDOUT` after `timeoutMs` (0 = never).
 */
export function readFirstByte(socket: Socket, timeoutMs = 0): Promise<{ byte: number; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | undefined, value?: { byte: number; rest: Buffer }): void => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(value!);
    };
    const onReadable = (): void => {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null || chunk.length === 0) return;
      finish(undefined, { byte: chunk[0]!, rest: chunk.subarray(1) });
    };
    const onEnd = (): void => finish(new TcpPunchError('ECONNRESET', 'the tunnel connection closed before its handshake'));
    const onError = (err: Error): void => finish(err);
    if (timeoutMs > 0) {
      timer = setTimeout(() => finish(new TcpPunchError('ETIMEDOUT', 'no tunnel handshake in time')), timeoutMs);
    }
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    onReadable();
  });
}
