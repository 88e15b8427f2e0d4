/**
 * tcp-punch: direct TCP connections between peers behind NATs, with an authenticated relay as fallback.
 * @packageDocumentation
 */
export { punch, punchDetailed, type PunchOptions, type PunchResult, type ConnectOptions } from './punch.js';
export { bindReusable, ReusablePort, type BindReusableOptions } from './reusable-port.js';
export { type Endpoint, type Family } from './endpoint.js';
export { TcpPunchError, AbortError } from './errors.js';

export {
  startServer,
  RendezvousServer,
  MemoryRegistry,
  SERVER_DEFAULTS,
  type ServerOptions,
  type ServerRelayOptions,
  type ServerStats,
  type Registry,
  type IdRecord,
  type RelayHooks,
  type ControlContext,
} from './server/index.js';
export {
  Peer,
  DEFAULT_STRATEGY,
  type PeerEvents,
  type PeerOptions,
  type DialOptions,
  type DialResult,
  type ConnectionInfo,
  type AttemptEvent,
  type AttemptOutcome,
  type DialStrategy,
  type DialContext,
  type DialPeer,
  type BuiltinStrategy,
  type DialTimings,
  type IncomingDial,
  type RelayEndInfo,
  type Role,
} from './peer/index.js';
export { UpgradableStream, type StreamPath } from './upgrade.js';
export {
  RelayService,
  RelayTokens,
  RELAY_DEFAULTS,
  relayDefaults,
  joinRelay,
  listenRelay,
  choosePump,
  nativePump,
  jsPump,
  type RelayLimits,
  type RelayMode,
  type Pump,
  type PumpKind,
  type PumpResult,
  type PumpOptions,
  type PumpSession,
} from './relay/index.js';
export { secureSocket, type SecureSocketOptions } from './tls.js';
export { exposeService, type ExposeOptions, type ExposedService, type TunnelEvent } from './tunnel/expose.js';
export { startTunnelClient, type TunnelClient, type TunnelClientOptions } from './tunnel/client.js';
export { checkNat, type NatCheckOptions, type NatCheckResult } from './nat-check/check.js';
export { startProbeServer, type ProbeServer } from './nat-check/probe-server.js';
export { deriveIdKey, PROTOCOL_VERSION } from './protocol/index.js';
