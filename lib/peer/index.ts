/**
 * The Peer API: register with a rendezvous server, dial other peers, accept their dials.
 */
export { Peer } from './peer.js';
export type { PeerEvents } from './peer.js';
export {
  directStrategy,
  relayStrategy,
  directFirstStrategy,
  relayFirstStrategy,
  BUILTIN_STRATEGIES,
  DEFAULT_STRATEGY,
} from './strategies.js';
export { DEFAULT_DIAL_TIMEOUT_MS } from './options.js';
export { directAuth } from './handshake.js';
export type { DirectAuthParams } from './handshake.js';
export type {
  AttemptEvent,
  AttemptOutcome,
  BuiltinStrategy,
  ConnectionInfo,
  DialContext,
  DialPeer,
  DialOptions,
  DialResult,
  DialStrategy,
  DialTimings,
  IncomingDial,
  PeerOptions,
  RelayEndInfo,
  Role,
} from './types.js';
