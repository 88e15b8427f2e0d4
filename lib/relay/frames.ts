/**
 * Bodies of the relay's messages (type bytes 0x40..0x4f, reserved for the relay by lib/protocol), defined with
 * the protocol's own field codecs so they are exactly as strict as every other message.
 *
 * | type | name                | where                     | fields                                                  |
 * |------|---------------------|---------------------------|---------------------------------------------------------|
 * | 0x40 | relay-join          | first frame, relay socket | token                                                   |
 * | 0x41 | relay-paired        | relay -> joiner           | sessionId, side, peer (the other side), maxBytes, maxDurationMs |
 * | 0x42 | relay-token-request | peer -> server, control   | reqId, target (peer id)                                 |
 * | 0x43 | relay-token         | server -> peer, control   | reqId, sessionId, side, peer, token, expiresInMs, relay |
 * | 0x44 | relay-end           | server -> peer, control   | sessionId, reason, code, bytesSent, bytesReceived       |
 *
 * Refusals on a relay socket are the protocol's ordinary `error` frame (0x07) with an `ERR_RELAY_*` code.
 * 64-bit counts travel as two u32 (high, low); `relay: []` in relay-token means "this server's own port".
 */
import { f, readField, writeField, BodyReader, BodyWriter, malformed } from '../protocol/fields.js';
import type { Endpoint, FieldSpec } from '../protocol/fields.js';
import { encodeFrame } from '../protocol/frame.js';
import type { RawFrame } from '../protocol/frame.js';
import { PEER_ID_PATTERN, nameOfType } from '../protocol/messages.js';
import type { RelayMsg } from '../protocol/messages.js';
import type { PumpEndReason } from './pump-types.js';
import { MAX_TOKEN_LENGTH } from './tokens.js';

/** Why a relay session ended, as `relay-end` reports it: a pump reason, or it never started. */
export type RelayEndReason = PumpEndReason | 'join-timeout' | 'rejected' | 'peer-gone';

export const RELAY_END_REASONS = [
  'eof',
  'error',
  'reset',
  'limit-bytes',
  'limit-duration',
  'limit-idle',
  'stopped',
  'join-timeout',
  'rejected',
  'peer-gone',
] as const satisfies readonly RelayEndReason[];

export interface RelayJoin {
  token: string;
}

export interface RelayPaired {
  sessionId: string;
  /** The side the receiver holds. */
  side: 'a' | 'b';
  /** The peer id on the other side. */
  peer: string;
  /** The session's byte limit, both directions together (0: none). */
  maxBytes: number;
  /** The session's duration limit in ms (0: none). */
  maxDurationMs: number;
}

export interface RelayTokenRequest {
  reqId: number;
  target: string;
}

export interface RelayTokenGrant {
  reqId: number;
  sessionId: string;
  side: 'a' | 'b';
  /** The peer id on the other side. */
  peer: string;
  token: string;
  expiresInMs: number;
  /** Where to join; empty: the server that sent this. */
  relay: Endpoint[];
}

export interface RelayEnd {
  sessionId: string;
  reason: RelayEndReason;
  /** An ERR_* or errno code for the reason, or '' for `eof`. */
  code: string;
  /** Bytes the relay delivered from this peer to the other. */
  bytesSent: number;
  /** Bytes the relay delivered from the other peer to this one. */
  bytesReceived: number;
}

interface Bodies {
  'relay-join': RelayJoin;
  'relay-paired': RelayPaired;
  'relay-token-request': RelayTokenRequest;
  'relay-token': RelayTokenGrant;
  'relay-end': RelayEnd;
}

/** Name of a relay message with a body defined here. */
export type RelayBodyName = keyof Bodies;

const sid = () => f.string(64, PEER_ID_PATTERN);
const id = () => f.string(64, PEER_ID_PATTERN);
const u64 = { kind: 'u64' } as const; // two u32, see below

type Spec = FieldSpec | typeof u64;

const SCHEMAS: { [N in RelayBodyName]: { type: number; fields: Record<keyof Bodies[N], Spec> } } = {
  'relay-join': { type: 0x40, fields: { token: f.string(MAX_TOKEN_LENGTH) } },
  'relay-paired': {
    type: 0x41,
    fields: { sessionId: sid(), side: f.enum('a', 'b'), peer: id(), maxBytes: u64, maxDurationMs: u64 },
  },
  'relay-token-request': { type: 0x42, fields: { reqId: f.u32(), target: id() } },
  'relay-token': {
    type: 0x43,
    fields: {
      reqId: f.u32(),
      sessionId: sid(),
      side: f.enum('a', 'b'),
      peer: id(),
      token: f.string(MAX_TOKEN_LENGTH),
      expiresInMs: f.u32(),
      relay: f.endpoints(4),
    },
  },
  'relay-end': {
    type: 0x44,
    fields: {
      sessionId: sid(),
      reason: f.enum(...RELAY_END_REASONS),
      code: f.string(48, /^([A-Z][A-Z0-9_]{1,47})?$/),
      bytesSent: u64,
      bytesReceived: u64,
    },
  },
};

const NAMES = new Map<number, RelayBodyName>(
  (Object.keys(SCHEMAS) as RelayBodyName[]).map((n) => [SCHEMAS[n].type, n]),
);

/** The type byte of a relay message. */
export function relayTypeOf(name: RelayBodyName): number {
  return SCHEMAS[name].type;
}

/** The body of a relay message. Throws `ERR_MALFORMED_FRAME` if a field violates its schema. */
export function encodeRelayBody<N extends RelayBodyName>(name: N, value: Bodies[N]): Buffer {
  const w = new BodyWriter();
  const v = value as unknown as Record<string, unknown>;
  for (const [key, spec] of Object.entries(SCHEMAS[name].fields) as [string, Spec][]) {
    if (spec.kind === 'u64') {
      const n = v[key];
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
        throw malformed(`${key} must be a safe non-negative integer`, { field: key });
      w.u32(Math.floor(n / 2 ** 32));
      w.u32(n % 2 ** 32);
    } else {
      writeField(w, spec, v[key], key);
    }
  }
  return w.finish();
}

/** A complete frame of a relay message. */
export function encodeRelayFrame<N extends RelayBodyName>(name: N, value: Bodies[N]): Buffer {
  return encodeFrame(SCHEMAS[name].type, encodeRelayBody(name, value));
}

/** A relay message in the protocol's `Message` shape, for `FramedSocket.send()` / `ControlContext.send()`. */
export function relayMessage<N extends RelayBodyName>(name: N, value: Bodies[N]): RelayMsg {
  const type = SCHEMAS[name].type;
  const known = (nameOfType(type) ?? 'relay-other') as RelayMsg['type'];
  return { type: known, typeByte: type, body: encodeRelayBody(name, value) };
}

/** A decoded relay message. */
export type DecodedRelay = { [N in RelayBodyName]: { name: N } & Bodies[N] }[RelayBodyName];

/**
 * Decodes a relay message (a `RelayMsg` from the protocol's decoder, or a raw frame).
 * Throws `ERR_UNKNOWN_TYPE` for a relay type byte without a body defined here, `ERR_MALFORMED_FRAME` otherwise.
 */
export function decodeRelay(msg: RelayMsg | RawFrame): DecodedRelay {
  const type = 'typeByte' in msg ? msg.typeByte : msg.type;
  const name = NAMES.get(type);
  if (name === undefined) throw malformed(`Unknown relay message type 0x${type.toString(16)}`);
  const r = new BodyReader(msg.body);
  const out: Record<string, unknown> = { name };
  for (const [key, spec] of Object.entries(SCHEMAS[name].fields) as [string, Spec][]) {
    if (spec.kind === 'u64') {
      const hi = r.u32(key);
      const lo = r.u32(key);
      const n = hi * 2 ** 32 + lo;
      if (!Number.isSafeInteger(n)) throw malformed(`${key} is out of range`, { field: key });
      out[key] = n;
    } else {
      out[key] = readField(r, spec, key);
    }
  }
  r.end();
  return out as unknown as DecodedRelay;
}

/** A `relay-paired` frame's header with an empty body: encodePairedFrames fills in the length. */
const PAIRED_HEADER = encodeFrame(SCHEMAS['relay-paired'].type, new Uint8Array(0));

/**
 * The two `relay-paired` frames of one session, A's and B's, in one allocation: the relay makes these for every
 * session, and the generic encoder builds each from a dozen small arrays. Byte for byte what
 * `encodeRelayFrame('relay-paired', ...)` makes (the fuzz tests compare them); values the schema refuses go
 * through that encoder, so they throw the same errors. Ids that pass the pattern are printable ASCII, so their
 * UTF-8 is one byte per character.
 */
export function encodePairedFrames(sessionId: string, peerA: string, peerB: string, maxBytes: number, maxDurationMs: number): [Buffer, Buffer] {
  const ok =
    PEER_ID_PATTERN.test(sessionId) &&
    PEER_ID_PATTERN.test(peerA) &&
    PEER_ID_PATTERN.test(peerB) &&
    Number.isSafeInteger(maxBytes) &&
    maxBytes >= 0 &&
    Number.isSafeInteger(maxDurationMs) &&
    maxDurationMs >= 0;
  if (!ok) {
    return [
      encodeRelayFrame('relay-paired', { sessionId, side: 'a', peer: peerB, maxBytes, maxDurationMs }),
      encodeRelayFrame('relay-paired', { sessionId, side: 'b', peer: peerA, maxBytes, maxDurationMs }),
    ];
  }
  // header (6) + sessionId (2 + n) + side (1) + peer (2 + n) + maxBytes (8) + maxDurationMs (8)
  const sizeA = 27 + sessionId.length + peerB.length;
  const sizeB = 27 + sessionId.length + peerA.length;
  const out = Buffer.allocUnsafe(sizeA + sizeB);
  const write = (at: number, size: number, side: number, peer: string): void => {
    PAIRED_HEADER.copy(out, at);
    out.writeUInt16BE(size - PAIRED_HEADER.length, at + 4);
    let o = at + PAIRED_HEADER.length;
    o = out.writeUInt16BE(sessionId.length, o);
    o += out.write(sessionId, o, 'latin1');
    o = out.writeUInt8(side, o);
    o = out.writeUInt16BE(peer.length, o);
    o += out.write(peer, o, 'latin1');
    o = out.writeUInt32BE(Math.floor(maxBytes / 2 ** 32), o);
    o = out.writeUInt32BE(maxBytes % 2 ** 32, o);
    o = out.writeUInt32BE(Math.floor(maxDurationMs / 2 ** 32), o);
    out.writeUInt32BE(maxDurationMs % 2 ** 32, o);
  };
  write(0, sizeA, 0, peerB);
  write(sizeA, sizeB, 1, peerA);
  return [out.subarray(0, sizeA), out.subarray(sizeA)];
}


/** The first frame of a connection to a relay: its type, its name for errors, and the largest accepted. */
export const JOIN_FIRST_FRAME = { type: relayTypeOf('relay-join'), name: 'relay-join', maxFrameSize: 2048 } as const;
