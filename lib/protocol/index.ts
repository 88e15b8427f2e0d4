/**
 * The tcp-punch wire protocol: framing, the message catalogue, key derivation and socket helpers.
 * See docs/PROTOCOL.md for the prose specification.
 */
export {
  PROTOCOL_VERSION,
  HEADER_SIZE,
  MAX_FRAME_SIZE,
  DEFAULT_MAX_FRAME_SIZE,
  encodeFrame,
  FrameDecoder,
} from './frame.js';
export type { RawFrame, FrameDecoderOptions } from './frame.js';
export { BodyReader, BodyWriter, malformed, truncateUtf8 } from './fields.js';
export type { Endpoint, FieldSpec, FieldValue } from './fields.js';
export {
  SCHEMAS,
  RELAY_TYPES,
  RELAY_TYPE_RANGE,
  PEER_ID_PATTERN,
  CODE_PATTERN,
  ATTEMPT_OUTCOMES,
  PATHS,
  ROLES,
  encodeBody,
  encodeMessage,
  decodeMessage,
  typeByteOf,
  nameOfType,
  isMsg,
} from './messages.js';
export type { Message, Msg, RelayMsg, SchemaName, RelayName } from './messages.js';
export {
  deriveIdKey,
  clientProof,
  serverProof,
  sessionKey,
  wrapPairKey,
  directMac,
  safeEqual,
  random,
} from './crypto.js';
export { FramedSocket, readMessage } from './stream.js';
export type { FramedSocketOptions, FramedSocketEvents, ReadMessageOptions } from './stream.js';
export { DIRECT_AUTH_TIMEOUT_MS, RESULT_GRACE_MS, MIN_ATTEMPT_MS } from './constants.js';
