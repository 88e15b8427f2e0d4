/**
 * The message catalogue: one schema per frame type, from which both the encoder and the strict decoder work,
 * and the TypeScript type of every message is inferred. docs/PROTOCOL.md describes each message in prose.
 *
 * Decoding a body that does not match its schema exactly (a field out of range, a bad enum value, invalid UTF-8,
 * a short body, trailing bytes) throws `ERR_MALFORMED_FRAME`; an unassigned type byte throws `ERR_UNKNOWN_TYPE`.
 * Type bytes 0x40..0x4f belong to the relay: their bodies are passed through undecoded (`body`), for the relay
 * module to parse with {@link BodyReader}.
 */
import { TcpPunchError } from '../errors.js';
import { BodyReader, BodyWriter, f, malformed, readField, writeField } from './fields.js';
import type { FieldSpec, FieldValue } from './fields.js';
import { HEADER_SIZE, PROTOCOL_VERSION, encodeFrameAs } from './frame.js';
import type { RawFrame } from './frame.js';

/** Peer ids: 1..64 printable ASCII characters, no spaces. */
export const PEER_ID_PATTERN = /^[\x21-\x7e]{1,64}$/;
/** Error codes on the wire: an errno name or an ERR_* code. */
export const CODE_PATTERN = /^[A-Z][A-Z0-9_]{1,47}$/;

const id = () => f.string(64, PEER_ID_PATTERN);
const code = () => f.string(48, CODE_PATTERN);
const text = () => f.string(256);
const coordId = () => f.bytes(16);
const attempt = () => f.u8();

/** Why one punch attempt ended, as reported by a peer and surfaced in `attempt` events. */
export const ATTEMPT_OUTCOMES = ['ok', 'timeout', 'rst', 'refused', 'auth-failed', 'error', 'aborted'] as const;
/**
 * Dial paths: `direct` (punch), `relay` (through the server's relay), `relay-upgradable` (relay now; the dialer may
 * later move the stream to a direct connection whose `connect` names this dial's coordId in `link`).
 */
export const PATHS = ['direct', 'relay', 'relay-upgradable'] as const;
/**
 * A side's NAT mapping as the peer measured it against the server's probe ports: `independent` (one public port
 * whatever the destination: punchable), `dependent` (a new public port per destination: "symmetric"), `unknown`.
 */
export const NAT_MAPPINGS = ['unknown', 'independent', 'dependent'] as const;
/**
 * A side's inbound filtering as the peer measured it: `open` when a connection from the server's address but
 * another port reached its probe port (endpoint-independent or address-dependent filtering: a SYN from the
 * peer's host on any port gets through, so a symmetric other side can still punch in), `port-dependent` when it
 * did not, `unknown` unless it probed.
 */
export const NAT_FILTERINGS = ['unknown', 'open', 'port-dependent'] as const;
/** Roles, always assigned by the server: the dialing side is the initiator. */
export const ROLES = ['initiator', 'responder'] as const;

/** Schemas by message name: `type` is the frame type byte; `fields` are written in this order. */
export const SCHEMAS = {
  // Control connection: handshake and liveness.
  // private: the control connection's local endpoint as the peer sees it; warm: that port is reusable (SO_REUSEADDR +
  // SO_REUSEPORT), so the peer can punch from it and the server's view of this connection is its NAT mapping.
  hello: {
    type: 0x01,
    fields: { id: id(), nonce: f.bytes(16), software: f.string(64), private: f.endpoints(4), warm: f.bool() },
  },
  challenge: { type: 0x02, fields: { nonce: f.bytes(32), auth: f.enum('none', 'secret', 'token') } },
  auth: { type: 0x03, fields: { proof: f.varbytes(0, 32) } },
  welcome: {
    type: 0x04,
    fields: {
      proof: f.bytes(32),
      token: f.varbytes(0, 32),
      observed: f.endpoint(),
      keepaliveMs: f.u32(),
      maxPending: f.u16(),
      // The server's NAT probe listeners (0: none), on the address the peer connected to.
      probePort1: f.u16(),
      probePort2: f.u16(),
    },
  },
  // rttUs: the round trip of the sender's previous ping (µs; 0 when none), which the server uses to time punches.
  ping: { type: 0x05, fields: { seq: f.u32(), rttUs: f.u32() } },
  pong: { type: 0x06, fields: { seq: f.u32() } },
  error: { type: 0x07, fields: { code: code(), message: text() } },
  goaway: { type: 0x08, fields: { code: code(), message: text() } },
  // This network's NAT mapping and filtering as the peer measured them, whenever it (re)measures.
  report: { type: 0x09, fields: { mapping: f.enum(...NAT_MAPPINGS), filtering: f.enum(...NAT_FILTERINGS) } },
  // A socket punched from the warm port of coordination coordId has closed on the sender's side.
  release: { type: 0x0a, fields: { coordId: coordId() } },
  // Second-family registration (dual-stack), the first message of its own connection in the other IP family: the
  // server records that connection's source as the peer's observation in that family and answers `observed`.
  // mac = HMAC(session key, 'family', nonce, id) proves the control session; nonce is single-use per session.
  'register-family': {
    type: 0x0b,
    fields: { id: id(), nonce: f.bytes(16), mac: f.bytes(32), private: f.endpoints(4) },
  },
  // Control connection: coordination of one dial.
  connect: {
    type: 0x10,
    // link: all zero, or the coordId of an earlier `relay-upgradable` dial to the same target that this direct dial
    // upgrades.
    fields: { reqId: f.u32(), target: id(), path: f.enum(...PATHS), timeoutMs: f.u32(), link: f.bytes(16) },
  },
  reject: { type: 0x11, fields: { reqId: f.u32(), code: code(), message: text() } },
  coord: {
    type: 0x12,
    fields: {
      reqId: f.u32(),
      coordId: coordId(),
      peer: id(),
      role: f.enum(...ROLES),
      path: f.enum(...PATHS),
      pairKey: f.bytes(32),
      timeoutMs: f.u32(),
      link: f.bytes(16),
      // Attempt 1 folded in when both sides punch from their warm ports (attempt 0: none, prepare/punch follow):
      // the same fields as `prepare` (nonce) and `punch`.
      attempt: attempt(),
      nonce: f.bytes(16),
      mode: f.enum('sync', 'reverse'),
      route: f.enum('public', 'private', 'hairpin'),
      remote: f.endpoints(1),
      delayMs: f.u32(),
      punchTimeoutMs: f.u32(),
    },
  },
  cancel: { type: 0x13, fields: { coordId: coordId(), code: code(), message: text() } },
  // port: `fresh` binds a new port and observes it (observe connection); `warm` punches from the control
  // connection's port, whose mapping the server knows. 0x15 and 0x16 (version 1's sync round) are retired.
  prepare: {
    type: 0x14,
    fields: { coordId: coordId(), attempt: attempt(), token: f.bytes(16), nonce: f.bytes(16), port: f.enum('fresh', 'warm') },
  },
  // Like `prepare` with `port: 'fresh'`, in the given IP family (4 or 6): the peer binds the port on the exact
  // address it registered in that family and observes it on the server's address in that family. Sent only to peers
  // that registered that family (`register-family`), so a peer that never did never sees this type.
  'prepare-family': {
    type: 0x1a,
    fields: { coordId: coordId(), attempt: attempt(), token: f.bytes(16), nonce: f.bytes(16), family: f.u8() },
  },
  punch: {
    type: 0x17,
    fields: {
      coordId: coordId(),
      attempt: attempt(),
      mode: f.enum('sync', 'reverse'),
      route: f.enum('public', 'private', 'hairpin'),
      remote: f.endpoint(),
      delayMs: f.u32(),
      timeoutMs: f.u32(),
    },
  },
  result: {
    type: 0x18,
    // committed: the sender has handed its socket over already (it awaits no `end ok`).
    fields: { coordId: coordId(), attempt: attempt(), outcome: f.enum(...ATTEMPT_OUTCOMES), detail: text(), committed: f.bool() },
  },
  end: {
    type: 0x19,
    fields: { coordId: coordId(), outcome: f.enum('ok', 'failed', 'cancelled'), code: code(), message: text() },
  },
  // Observe connection, opened from the port that will punch.
  observe: {
    type: 0x20,
    fields: {
      coordId: coordId(),
      attempt: attempt(),
      token: f.bytes(16),
      private: f.endpoints(4),
      mapping: f.enum(...NAT_MAPPINGS),
      filtering: f.enum(...NAT_FILTERINGS),
    },
  },
  observed: { type: 0x21, fields: { endpoint: f.endpoint() } },
  // The punched socket itself.
  'direct-auth': {
    type: 0x30,
    fields: { coordId: coordId(), attempt: attempt(), role: f.enum(...ROLES), mac: f.bytes(32) },
  },
} as const;

/** Relay message types (0x40..0x4f); their bodies are defined by the relay module. */
export const RELAY_TYPES = {
  'relay-join': 0x40,
  'relay-paired': 0x41,
  'relay-token-request': 0x42,
  'relay-token': 0x43,
  'relay-end': 0x44,
} as const;

/** Lowest and highest type byte of the range reserved for the relay. */
export const RELAY_TYPE_RANGE = [0x40, 0x4f] as const;

type Schemas = typeof SCHEMAS;
/** Name of a message with a schema. */
export type SchemaName = keyof Schemas;
/** Name of a relay message (opaque body). */
export type RelayName = keyof typeof RELAY_TYPES;

type FieldsOf<S extends { fields: Record<string, FieldSpec> }> = {
  -readonly [K in keyof S['fields']]: FieldValue<S['fields'][K]>;
};

/** A decoded message with a schema, e.g. `Msg<'hello'>` is `{ type: 'hello'; id: string; nonce: Uint8Array; ... }`. */
export type Msg<N extends SchemaName> = N extends SchemaName ? { type: N } & FieldsOf<Schemas[N]> : never;

/** A relay-range message: the body is left to the relay module. */
export interface RelayMsg {
  type: RelayName | 'relay-other';
  /** The raw type byte, 0x40..0x4f. */
  typeByte: number;
  body: Uint8Array;
}

/** Any protocol message. */
export type Message = { [N in SchemaName]: Msg<N> }[SchemaName] | RelayMsg;

const BY_TYPE = new Map<number, SchemaName>();
for (const name of Object.keys(SCHEMAS) as SchemaName[]) BY_TYPE.set(SCHEMAS[name].type, name);
const RELAY_BY_TYPE = new Map<number, RelayName>();
for (const name of Object.keys(RELAY_TYPES) as RelayName[]) RELAY_BY_TYPE.set(RELAY_TYPES[name], name);

/** The type byte of a named message. */
export function typeByteOf(name: SchemaName | RelayName): number {
  return name in SCHEMAS ? SCHEMAS[name as SchemaName].type : RELAY_TYPES[name as RelayName];
}

/** The message name of a type byte, if it is assigned. */
export function nameOfType(type: number): SchemaName | RelayName | undefined {
  return BY_TYPE.get(type) ?? RELAY_BY_TYPE.get(type);
}

/** Each schema's fields in wire order, listed once (not an Object.entries per message). */
const FIELD_LISTS = new Map<SchemaName, readonly (readonly [string, FieldSpec])[]>();
for (const name of Object.keys(SCHEMAS) as SchemaName[]) FIELD_LISTS.set(name, Object.entries(SCHEMAS[name].fields as Record<string, FieldSpec>));

/** Writes the fields of a schema message; throws `ERR_MALFORMED_FRAME` if a field violates its schema. */
function writeFields(w: BodyWriter, msg: Exclude<Message, RelayMsg>): void {
  const fields = FIELD_LISTS.get(msg.type);
  if (!fields) throw malformed(`Unknown message type ${String((msg as { type: unknown }).type)}`);
  const values = msg as unknown as Record<string, unknown>;
  for (const [name, spec] of fields) writeField(w, spec, values[name], name);
}

/** Encodes a message body (no frame header). Throws `ERR_MALFORMED_FRAME` if a field violates its schema. */
export function encodeBody(msg: Message): Buffer {
  if (isRelayMsg(msg)) return Buffer.from(msg.body);
  const w = new BodyWriter();
  writeFields(w, msg);
  return w.finish();
}

/** Encodes a message as a complete frame: header and body in one buffer. */
export function encodeMessage(msg: Message): Buffer {
  return encodeAs(PROTOCOL_VERSION, msg);
}

/** Encodes an `error` frame in another protocol version (see {@link encodeFrameAs}). */
export function encodeErrorAs(version: number, msg: Msg<'error'>): Buffer {
  return encodeAs(version, msg);
}

function encodeAs(version: number, msg: Message): Buffer {
  if (isRelayMsg(msg)) return encodeFrameAs(version, msg.typeByte, msg.body);
  const w = new BodyWriter(HEADER_SIZE);
  writeFields(w, msg);
  return w.frame(version, SCHEMAS[msg.type].type);
}

function isRelayMsg(msg: Message): msg is RelayMsg {
  return msg.type.startsWith('relay-');
}

/**
 * Decodes a frame into a message, validating every field.
 * Throws `ERR_UNKNOWN_TYPE` for an unassigned type byte and `ERR_MALFORMED_FRAME` for a body that does not match.
 */
export function decodeMessage(frame: RawFrame): Message {
  const name = BY_TYPE.get(frame.type);
  if (name === undefined) {
    if (frame.type >= RELAY_TYPE_RANGE[0] && frame.type <= RELAY_TYPE_RANGE[1]) {
      return { type: RELAY_BY_TYPE.get(frame.type) ?? 'relay-other', typeByte: frame.type, body: frame.body };
    }
    throw new TcpPunchError('ERR_UNKNOWN_TYPE', `Unknown message type 0x${frame.type.toString(16)}`, {
      typeByte: frame.type,
    });
  }
  const r = new BodyReader(frame.body);
  const out: Record<string, unknown> = { type: name };
  for (const [key, spec] of FIELD_LISTS.get(name)!) out[key] = readField(r, spec, key);
  r.end();
  return out as Message;
}

/** Type guard narrowing a decoded message to one name. */
export function isMsg<N extends SchemaName>(msg: Message, name: N): msg is Msg<N> {
  return msg.type === name;
}
