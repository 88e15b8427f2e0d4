/**
 * tcp-punch: direct TCP connections between peers behind NATs.
 * @packageDocumentation
 */
export { punch, punchDetailed, type PunchOptions, type PunchResult, type ConnectOptions } from './punch.js';
export { bindReusable, ReusablePort, type BindReusableOptions } from './reusable-port.js';
export { type Endpoint, type Family } from './endpoint.js';
export { TcpPunchError, AbortError } from './errors.js';
