/**
 * The rendezvous server: registration, observation and coordination of direct connections.
 */
export { startServer, RendezvousServer } from './server.js';
export type { ServerStats, RendezvousServerEvents } from './server.js';
export type { CoordinationEnd } from './coordinator.js';
export { SERVER_DEFAULTS, RANGES as SERVER_RANGES } from './options.js';
export type { ServerOptions, ServerRelayOptions, RelayHooks, ControlContext } from './options.js';
export { MemoryRegistry } from '../registry.js';
export type { Registry, IdRecord, MemoryRegistryOptions } from '../registry.js';
