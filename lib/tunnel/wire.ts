/**
 * The tunnel protocol on a peer connection (version {@link TUNNEL_VERSION}).
 *
 * 1. Both sides send a HELLO at once: `'T' 'U' version flags nonce[16]` (flags: KEY = this side holds a service
 *    key, ENCRYPT = this side wants the stream encrypted). The connecting side then sends its key proof (32 bytes)
 *    when it holds a key; the exposing side answers with a verdict: `K` (followed by its own proof when a key is
 *    in use) or `R reason` and closes. See handshake.ts for the proofs and the TLS that may follow.
 * 2. The connection is then a spare: the connecting side may send PING at any time, the exposing side answers
 *    PONG at once, without touching its service (a liveness check, and traffic that keeps a relay from ending
 *    the spare for idleness).
 * 3. When the connecting side hands a spare to a client it sends OPEN; the exposing side connects to its service
 *    and answers ACK (then relays) or NAK (then closes). The connecting side waits for the answer before it
 *    relays a byte, so OPEN is the last byte the exposing side receives before it hands the socket to the native
 *    pump: nothing is left over in JS.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TcpPunchError } from '../errors.js';

/** The tunnel protocol's version, sent in every HELLO. Version 1 had no HELLO (OPEN came first). */
export const TUNNEL_VERSION = 2;

export const OPEN = 0x4f; // 'O'
export const ACK = 0x41; // 'A'
export const NAK = 0x4e; // 'N'
export const PING = 0x50; // 'P'
export const PONG = 0x70; // 'p'
/** Verdict: the exposing side accepts the connection. */
export const ACCEPT = 0x4b; // 'K'
/** Verdict: the exposing side refuses; one reason byte follows. */
export const REFUSE = 0x52; // 'R'

/** Why the exposing side refused, as the byte after REFUSE, with the code each side reports. */
export const REFUSALS = {
  1: { code: 'ERR_SERVICE_KEY', why: 'wrong key' },
  2: { code: 'ERR_SERVICE_NOT_ALLOWED', why: 'this peer is not on its --allow list' },
  3: { code: 'ERR_TUNNEL_ENCRYPTION', why: 'one side has --no-encrypt, the other does not' },
  4: { code: 'ERR_UNSUPPORTED_VERSION', why: 'unsupported tunnel protocol version' },
  5: { code: 'ERR_TUNNEL_HANDSHAKE', why: 'malformed tunnel handshake' },
} as const;
export type RefusalReason = keyof typeof REFUSALS;

export const HELLO_LENGTH = 20;
export const NONCE_LENGTH = 16;
export const PROOF_LENGTH = 32;
const MAGIC = [0x54, 0x55]; // 'T' 'U'
export const FLAG_KEY = 1;
export const FLAG_ENCRYPT = 2;

export interface Hello {
  version: number;
  flags: number;
  nonce: Buffer;
}

export function encodeHello(flags: number, nonce: Buffer): Buffer {
  return Buffer.concat([Buffer.from([...MAGIC, TUNNEL_VERSION, flags]), nonce]);
}

/**
 * Parses a HELLO. Throws `ERR_UNSUPPORTED_VERSION` (naming both versions) for another version, also for a
 * version-1 peer (its first byte is OPEN), and `ERR_TUNNEL_HANDSHAKE` for anything else that is not a HELLO.
 */
export function decodeHello(bytes: Buffer): Hello {
  if (bytes[0] === OPEN) {
    throw new TcpPunchError('ERR_UNSUPPORTED_VERSION', `the other side speaks tunnel protocol 1, this side ${TUNNEL_VERSION}`, { version: 1, supported: TUNNEL_VERSION });
  }
  if (bytes.length !== HELLO_LENGTH || bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1]) {
    throw new TcpPunchError('ERR_TUNNEL_HANDSHAKE', 'the other side did not start the tunnel handshake');
  }
  if (bytes[2] !== TUNNEL_VERSION) {
    throw new TcpPunchError('ERR_UNSUPPORTED_VERSION', `the other side speaks tunnel protocol ${bytes[2]}, this side ${TUNNEL_VERSION}`, { version: bytes[2], supported: TUNNEL_VERSION });
  }
  return { version: bytes[2]!, flags: bytes[3]!, nonce: Buffer.from(bytes.subarray(4)) };
}

/**
 * Reads exactly `n` bytes of `stream` (leaving whatever follows in its buffer). A HELLO-sized read returns as soon
 * as the first byte says it is a version-1 OPEN, so that the caller can name the version instead of waiting.
 * Rejects with `ECONNRESET` if the stream ends first, `ETIMEDOUT` after `timeoutMs` (0 = never).
 */
export function readBytes(stream: Duplex, n: number, timeoutMs = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | undefined, value?: Buffer): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      if (err) reject(err);
      else resolve(value!);
    };
    const onReadable = (): void => {
      const chunk = stream.read(n) as Buffer | null;
      // At the end of the stream read(n) returns what is left, however short.
      if (chunk !== null) return chunk.length === n ? finish(undefined, chunk) : onEnd();
      const head = stream.readableLength > 0 ? (stream.read(1) as Buffer | null) : null;
      if (head === null) return;
      if (n === HELLO_LENGTH && head[0] === OPEN) return finish(undefined, head);
      stream.unshift(head);
    };
    const onEnd = (): void => finish(new TcpPunchError('ECONNRESET', 'the tunnel connection closed during its handshake'));
    const onError = (err: Error): void => finish(err);
    if (timeoutMs > 0) {
      timer = setTimeout(() => finish(new TcpPunchError('ETIMEDOUT', 'no tunnel handshake in time')), timeoutMs);
    }
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    onReadable();
  });
}

/**
 * Reads the first byte of `socket` and resolves it with every byte that came after it (possibly none).
 * Rejects with `ECONNRESET` if the socket ends or closes first, `ETIMEDOUT` after `timeoutMs` (0 = never).
 */
export function readFirstByte(socket: Socket | Duplex, timeoutMs = 0): Promise<{ byte: number; rest: Buffer }> {
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

/**
 * The exposing side of step 2: answers each PING with a PONG until OPEN arrives, and resolves then. Rejects with
 * `ERR_TUNNEL_HANDSHAKE` for any other byte or a byte after OPEN (the connecting side waits for the answer), and
 * `ECONNRESET` if the stream ends first.
 */
export function awaitOpen(stream: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    const finish = (err?: Error): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', finish);
      if (err) reject(err);
      else resolve();
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) {
        for (let i = 0; i < chunk.length; i++) {
          if (chunk[i] === PING) {
            stream.write(Buffer.from([PONG]));
          } else if (chunk[i] === OPEN && i === chunk.length - 1 && stream.readableLength === 0) {
            return finish();
          } else {
            return finish(new TcpPunchError('ERR_TUNNEL_HANDSHAKE', `unexpected byte 0x${chunk[i]!.toString(16)} before OPEN`));
          }
        }
      }
    };
    const onEnd = (): void => finish(new TcpPunchError('ECONNRESET', 'the tunnel connection closed before OPEN'));
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', finish);
    onReadable();
  });
}
