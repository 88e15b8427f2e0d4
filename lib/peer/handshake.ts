/**
 * The direct-auth handshake on a freshly punched socket: both sides send
 * `direct-auth { coordId, attempt, role, HMAC(pairKey, coordId attempt role nonce) }` at once and check the other's.
 * Only the peer the server paired in this attempt knows the pair key, and the MAC is bound to the role, so a
 * stranger on the port, a replay from another attempt or a reflected MAC all fail with `ERR_AUTH_FAILED`.
 */
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { directMac, safeEqual } from '../protocol/crypto.js';
import { encodeMessage } from '../protocol/messages.js';
import { readMessage } from '../protocol/stream.js';
import type { Role } from './types.js';

/** Everything that identifies one attempt of one coordination. */
export interface DirectAuthParams {
  pairKey: Uint8Array;
  coordId: Uint8Array;
  attempt: number;
  role: Role;
  nonce: Uint8Array;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Runs the handshake; resolves when the far side proved it is the paired peer. Bytes the far side sent after its
 * handshake frame stay in the socket. Does not close the socket.
 * @throws TcpPunchError `ERR_AUTH_FAILED`, `ETIMEDOUT`, `ECONNRESET` or `ABORT_ERR`.
 */
export async function directAuth(socket: Socket, p: DirectAuthParams): Promise<void> {
  const other: Role = p.role === 'initiator' ? 'responder' : 'initiator';
  socket.write(
    encodeMessage({
      type: 'direct-auth',
      coordId: p.coordId,
      attempt: p.attempt,
      role: p.role,
      mac: directMac(p.pairKey, p.coordId, p.attempt, p.role, p.nonce),
    }),
  );
  let msg;
  try {
    msg = await readMessage(socket, { maxFrameSize: 128, timeoutMs: p.timeoutMs, signal: p.signal });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ETIMEDOUT' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ABORT_ERR') throw err;
    throw new TcpPunchError('ERR_AUTH_FAILED', 'The far side did not speak the handshake', { cause: err });
  }
  const ok =
    msg.type === 'direct-auth' &&
    msg.attempt === p.attempt &&
    msg.role === other &&
    safeEqual(msg.coordId, p.coordId) &&
    safeEqual(msg.mac, directMac(p.pairKey, p.coordId, p.attempt, other, p.nonce));
  if (!ok) throw new TcpPunchError('ERR_AUTH_FAILED', 'The far side failed the handshake: not the paired peer');
}
