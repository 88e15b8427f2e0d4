/**
 * The relay fallback: tokens, the relay service (pairing, limits), its client, and the byte pumps.
 */
export {
  RelayService,
  type RelayServiceOptions,
  type RelayServiceEvents,
  type RelaySessionInfo,
  type RelaySessionEnd,
  type RelayStats,
} from './relay-service.js';
export { listenRelay, type ListenRelayOptions, type RelayListener } from './relay-server.js';
export { joinRelay, type JoinRelayOptions, type RelayConnection } from './relay-client.js';
export { RelayTokens, MAX_TOKEN_LENGTH, type RelayTokenClaims, type RelayTokenPair, type RelayTokensOptions } from './tokens.js';
export { RELAY_DEFAULTS, relayDefaults, type RelayLimits, type RelayMode } from './limits.js';
export {
  RELAY_END_REASONS,
  decodeRelay,
  encodeRelayBody,
  encodeRelayFrame,
  relayMessage,
  relayTypeOf,
  type DecodedRelay,
  type RelayBodyName,
  type RelayEndReason,
  type RelayJoin,
  type RelayPaired,
  type RelayTokenRequest,
  type RelayTokenGrant,
  type RelayEnd,
} from './frames.js';
export {
  choosePump,
  defaultPump,
  jsPump,
  nativePump,
  configureNativePump,
  type NativePumpConfig,
  type Pump,
  type PumpKind,
  type PumpEndReason,
  type PumpOptions,
  type PumpResult,
  type PumpSession,
  type PumpStats,
  type PumpStopReason,
} from './pump.js';
