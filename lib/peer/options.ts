/**
 * Validation and defaults of {@link PeerOptions} and {@link DialOptions}.
 */
import { isIP } from 'node:net';

import { invalidArgType, invalidArgValue, outOfRange } from '../errors.js';
import { deriveIdKey } from '../protocol/crypto.js';
import type { Endpoint } from '../endpoint.js';
import { PEER_ID_PATTERN } from '../protocol/messages.js';
import { BUILTIN_STRATEGIES, DEFAULT_STRATEGY } from './strategies.js';
import type { DialOptions, DialStrategy, PeerOptions } from './types.js';

/** Peer options after validation. */
export interface ResolvedPeerOptions {
  server: Endpoint;
  id: string;
  idKey: Uint8Array | undefined;
  token: Uint8Array | undefined;
  localAddress: string | undefined;
  connectTimeoutMs: number;
  reconnect: { minDelayMs: number; maxDelayMs: number } | undefined;
  accept: PeerOptions['accept'];
  punch: { retryDelayMs?: number; ttl?: number };
  /** Explicit probe ports; undefined: those the server announces; false: no probe. */
  natProbe: { ports: [number, number]; host: string | undefined } | false | undefined;
  strategies: Record<string, DialStrategy>;
  /** The same server in the other IP family (dual-stack), or undefined. */
  dualStackServer: Endpoint | undefined;
}

/** Default dial deadline. */
export const DEFAULT_DIAL_TIMEOUT_MS = 15_000;

/** Parses `host:port`, `[v6]:port` or `{ host, port }`. */
export function parseServer(server: unknown): Endpoint {
  if (typeof server === 'object' && server !== null) {
    const { host, port } = server as Partial<Endpoint>;
    if (typeof host !== 'string' || host.length === 0) throw invalidArgType('options.server.host', 'a non-empty string', host);
    checkInt(port, 'options.server.port', 1, 65535);
    return { host, port: port as number };
  }
  if (typeof server !== 'string') throw invalidArgType('options.server', 'a "host:port" string or an endpoint', server);
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(server);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw invalidArgValue('options.server', 'must be "host:port" or "[ipv6]:port"', server);
  return { host: (m[1] ?? m[2])!, port };
}

/** Validates a peer id. */
export function checkPeerId(id: unknown, name: string): string {
  if (typeof id !== 'string') throw invalidArgType(name, 'of type string', id);
  if (!PEER_ID_PATTERN.test(id)) throw invalidArgValue(name, 'must be 1..64 printable ASCII characters without spaces', id);
  return id;
}

/** Validates and applies defaults. */
export function resolvePeerOptions<S extends string>(o: PeerOptions<S>): ResolvedPeerOptions {
  if (typeof o !== 'object' || o === null) throw invalidArgType('options', 'an object', o);
  const server = parseServer(o.server);
  const id = checkPeerId(o.id, 'options.id');
  if (o.secret !== undefined && typeof o.secret !== 'string' && !(o.secret instanceof Uint8Array))
    throw invalidArgType('options.secret', 'a string or Uint8Array', o.secret);
  if (o.idKey !== undefined && (!(o.idKey instanceof Uint8Array) || o.idKey.length !== 32))
    throw invalidArgValue('options.idKey', 'must be a 32-byte Uint8Array', o.idKey);
  if (o.token !== undefined && (!(o.token instanceof Uint8Array) || o.token.length !== 32))
    throw invalidArgValue('options.token', 'must be a 32-byte Uint8Array', o.token);
  if (o.localAddress !== undefined && (typeof o.localAddress !== 'string' || isIP(o.localAddress) === 0))
    throw invalidArgValue('options.localAddress', 'must be a numeric IP address', o.localAddress);
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  checkInt(connectTimeoutMs, 'options.connectTimeoutMs', 1, 600_000);
  let reconnect: ResolvedPeerOptions['reconnect'];
  if (o.reconnect !== false) {
    const r = typeof o.reconnect === 'object' && o.reconnect !== null ? o.reconnect : {};
    reconnect = { minDelayMs: r.minDelayMs ?? 250, maxDelayMs: r.maxDelayMs ?? 10_000 };
    checkInt(reconnect.minDelayMs, 'options.reconnect.minDelayMs', 1, 3_600_000);
    checkInt(reconnect.maxDelayMs, 'options.reconnect.maxDelayMs', reconnect.minDelayMs, 3_600_000);
  }
  if (o.accept !== undefined && typeof o.accept !== 'function') throw invalidArgType('options.accept', 'a function', o.accept);
  const strategies = { ...BUILTIN_STRATEGIES };
  for (const [name, s] of Object.entries<DialStrategy>(o.strategies ?? ({} as Record<S, DialStrategy>))) {
    if (typeof s?.dial !== 'function') throw invalidArgType(`options.strategies.${name}`, 'a DialStrategy', s);
    strategies[name] = s;
  }
  let natProbe: ResolvedPeerOptions['natProbe'] = o.natProbe === false ? false : undefined;
  if (o.natProbe !== undefined && o.natProbe !== false) {
    if (typeof o.natProbe !== 'object' || o.natProbe === null) throw invalidArgType('options.natProbe', 'false or { ports, host? }', o.natProbe);
    const { ports, host } = o.natProbe;
    if (!Array.isArray(ports) || ports.length !== 2) throw invalidArgValue('options.natProbe.ports', 'must be two port numbers', ports);
    ports.forEach((p, i) => checkInt(p, `options.natProbe.ports[${i}]`, 1, 65535));
    if (ports[0] === ports[1]) throw invalidArgValue('options.natProbe.ports', 'must be two different ports', ports);
    if (host !== undefined && (typeof host !== 'string' || host.length === 0)) throw invalidArgType('options.natProbe.host', 'a non-empty string', host);
    natProbe = { ports: [ports[0], ports[1]], host };
  }
  const idKey = o.idKey ?? (o.secret !== undefined ? deriveIdKey(o.secret, id) : undefined);
  const punch: ResolvedPeerOptions['punch'] = {};
  if (o.punch?.retryDelayMs !== undefined) punch.retryDelayMs = o.punch.retryDelayMs;
  if (o.punch?.ttl !== undefined) punch.ttl = o.punch.ttl;
  return {
    server,
    id,
    idKey,
    token: o.token && Uint8Array.from(o.token),
    localAddress: o.localAddress,
    connectTimeoutMs,
    reconnect,
    accept: o.accept,
    punch,
    natProbe,
    strategies,
    dualStackServer: o.dualStackServer === undefined ? undefined : parseDualStackServer(o.dualStackServer),
  };
}

function parseDualStackServer(value: unknown): Endpoint {
  try {
    return parseServer(value);
  } catch {
    throw invalidArgValue('options.dualStackServer', 'must be "host:port", "[ipv6]:port" or an endpoint', value);
  }
}

/** Validates dial options. */
export function resolveDialOptions<S extends string>(
  o: DialOptions<S>,
  strategies: Record<string, DialStrategy>,
): { timeoutMs: number; signal: AbortSignal | undefined; strategy: DialStrategy } {
  if (typeof o !== 'object' || o === null) throw invalidArgType('options', 'an object', o);
  const timeoutMs = o.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  checkInt(timeoutMs, 'options.timeoutMs', 1, 600_000);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an AbortSignal', o.signal);
  const name = o.strategy ?? DEFAULT_STRATEGY;
  const strategy = Object.hasOwn(strategies, name) ? strategies[name] : undefined;
  if (!strategy) throw invalidArgValue('options.strategy', `must be one of ${Object.keys(strategies).join(', ')}`, name);
  return { timeoutMs, signal: o.signal, strategy };
}

function checkInt(v: unknown, name: string, min: number, max: number): void {
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isInteger(v) || v < min || v > max) throw outOfRange(name, `an integer in ${min}..${max}`, v);
}
