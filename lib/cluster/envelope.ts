/**
 * The bus envelope: what one cluster message carries around a protocol frame, before it is sealed.
 *
 * ```
 * kind u8 | sentAt f64 BE (ms since the epoch) | msgId 12 | fromNode (u8 len, utf8) | body by kind:
 *   deliver (1):        peerId (u8 len, utf8) | frame
 *   to-coordinator (2): coordId (u8 len) | fromPeer (u8 len, utf8) | frame
 *   revoke (3):         peerId (u8 len, utf8) | epoch (u8 len, ascii digits)
 *   deliver-at (4):     peerId (u8 len, utf8) | epoch (u8 len, ascii digits) | frame
 * ```
 *
 * `deliver-at` is a `deliver` planned on the peer's card at lease epoch `epoch` (see lib/cluster/cards.ts); it
 * decodes as `deliver` with `epoch` set, and a node from before it drops it as an unknown kind.
 *
 * `frame` is one complete protocol frame (lib/protocol's encodeMessage): the bus neither knows nor cares which
 * messages the protocol has, and a frame of another protocol version fails to decode like any malformed one.
 */
import { randomBytes } from 'node:crypto';

import { TcpPunchError } from '../errors.js';
import { FrameDecoder, MAX_FRAME_SIZE, decodeMessage, encodeMessage } from '../protocol/index.js';
import type { Message } from '../protocol/index.js';

/** A decoded envelope. */
export type Envelope =
  | { kind: 'deliver'; sentAt: number; msgId: Buffer; fromNode: string; peerId: string; msg: Message; epoch?: string }
  | { kind: 'to-coordinator'; sentAt: number; msgId: Buffer; fromNode: string; coordId: Uint8Array; fromPeer: string; msg: Message }
  | { kind: 'revoke'; sentAt: number; msgId: Buffer; fromNode: string; peerId: string; epoch: string };

/** What a sender fills in (the envelope's id and time are added by {@link encodeEnvelope}). */
export type EnvelopeInput = Envelope extends infer E ? (E extends Envelope ? Omit<E, 'sentAt' | 'msgId'> : never) : never;

const KINDS = { deliver: 1, 'to-coordinator': 2, revoke: 3, 'deliver-at': 4 } as const;
const MSG_ID_LEN = 12;

/** Encodes an envelope; throws the protocol's coded error when the message does not encode. */
export function encodeEnvelope(e: EnvelopeInput, now = Date.now()): Buffer {
  const head = Buffer.allocUnsafe(1 + 8);
  head[0] = e.kind === 'deliver' && e.epoch !== undefined ? KINDS['deliver-at'] : KINDS[e.kind];
  head.writeDoubleBE(now, 1);
  const parts: Buffer[] = [head, randomBytes(MSG_ID_LEN), short(e.fromNode)];
  if (e.kind === 'deliver' && e.epoch !== undefined) parts.push(short(e.peerId), short(epochOf(e.epoch)), encodeMessage(e.msg));
  else if (e.kind === 'deliver') parts.push(short(e.peerId), encodeMessage(e.msg));
  else if (e.kind === 'to-coordinator') parts.push(short(e.coordId), short(e.fromPeer), encodeMessage(e.msg));
  else parts.push(short(e.peerId), short(e.epoch));
  return Buffer.concat(parts);
}

/** Decodes an envelope. @throws TcpPunchError `ERR_CLUSTER_MALFORMED` (or the protocol's frame codes). */
export function decodeEnvelope(buf: Buffer): Envelope {
  const r = new Cursor(buf);
  const kind = r.u8();
  const sentAt = r.f64();
  const msgId = r.take(MSG_ID_LEN);
  const fromNode = r.str();
  if (kind === KINDS.deliver) {
    const peerId = r.str();
    return { kind: 'deliver', sentAt, msgId, fromNode, peerId, msg: decodeFrame(r.rest()) };
  }
  if (kind === KINDS['to-coordinator']) {
    const coordId = Uint8Array.from(r.short());
    const fromPeer = r.str();
    return { kind: 'to-coordinator', sentAt, msgId, fromNode, coordId, fromPeer, msg: decodeFrame(r.rest()) };
  }
  if (kind === KINDS['deliver-at']) {
    const peerId = r.str();
    const epoch = epochOf(r.str());
    return { kind: 'deliver', sentAt, msgId, fromNode, peerId, epoch, msg: decodeFrame(r.rest()) };
  }
  if (kind === KINDS.revoke) {
    const peerId = r.str();
    const epoch = epochOf(r.str());
    r.end();
    return { kind: 'revoke', sentAt, msgId, fromNode, peerId, epoch };
  }
  throw malformed(`unknown kind ${kind}`);
}

function decodeFrame(bytes: Buffer): Message {
  const d = new FrameDecoder({ maxFrameSize: MAX_FRAME_SIZE });
  d.write(bytes);
  const frame = d.read();
  if (!frame || d.buffered !== 0) throw malformed('not exactly one frame');
  return decodeMessage(frame);
}

function epochOf(epoch: string): string {
  if (!/^\d{1,20}$/.test(epoch)) throw malformed('bad epoch');
  return epoch;
}

function short(v: string | Uint8Array): Buffer {
  const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
  if (b.length > 255) throw malformed('field longer than 255 bytes');
  return Buffer.concat([Uint8Array.of(b.length), b]);
}

function malformed(why: string): TcpPunchError {
  return new TcpPunchError('ERR_CLUSTER_MALFORMED', `Malformed cluster message: ${why}`);
}

class Cursor {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  take(n: number): Buffer {
    if (this.at + n > this.buf.length) throw malformed('truncated');
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0]!;
  }
  f64(): number {
    return this.take(8).readDoubleBE(0);
  }
  short(): Buffer {
    return this.take(this.u8());
  }
  str(): string {
    const s = this.short().toString('utf8');
    if (s.length === 0) throw malformed('empty name');
    return s;
  }
  rest(): Buffer {
    return this.take(this.buf.length - this.at);
  }
  end(): void {
    if (this.at !== this.buf.length) throw malformed('trailing bytes');
  }
}
