/**
 * Endpoints: validation of `{ host, port }` arguments and resolution of host names to numeric addresses.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { TcpPunchError, invalidArgType, outOfRange } from './errors.js';

/** A TCP endpoint. `host` is an IPv4/IPv6 address or, where accepted, a host name. */
export interface Endpoint {
  host: string;
  port: number;
}

/** IP version of an address. */
export type Family = 4 | 6;

/** Throws unless `value` is an integer in `min..max`. */
export function validateInteger(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(name, `an integer >= ${min} and <= ${max}`, value);
}

/** Throws unless `value` is a port number (0..65535). */
export function validatePort(value: unknown, name: string): asserts value is number {
  validateInteger(value, name, 0, 65535);
}

/** Throws unless `value` is `{ host: string, port: 1..65535 }`. */
export function validateEndpoint(value: unknown, name: string): asserts value is Endpoint {
  if (typeof value !== 'object' || value === null) throw invalidArgType(name, 'an object { host, port }', value);
  const { host, port } = value as Record<string, unknown>;
  if (typeof host !== 'string' || host.length === 0) throw invalidArgType(`${name}.host`, 'a non-empty string', host);
  validateInteger(port, `${name}.port`, 1, 65535);
}

/** The family of a numeric address, or 0 for a host name. */
export function familyOf(host: string): Family | 0 {
  return isIP(host) as Family | 0;
}

/** The wildcard address of a family. */
export function anyAddress(family: Family): string {
  return family === 6 ? '::' : '0.0.0.0';
}

/**
 * Resolves each endpoint's host to numeric addresses, in order and without duplicates.
 * Names resolve through the system resolver (`dns.lookup`), as `net.connect` does. When every host is already
 * numeric the result comes back synchronously, so callers can start work in the same tick.
 */
export function resolveEndpoints(endpoints: readonly Endpoint[]): Endpoint[] | Promise<Endpoint[]> {
  if (endpoints.every((e) => familyOf(e.host) !== 0)) return dedupe(endpoints);
  return resolveNames(endpoints);
}

function dedupe(endpoints: readonly Endpoint[]): Endpoint[] {
  const seen = new Set<string>();
  return endpoints.filter(({ host, port }) => {
    const key = `${host}|${port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).map(({ host, port }) => ({ host, port }));
}

async function resolveNames(endpoints: readonly Endpoint[]): Promise<Endpoint[]> {
  const out: Endpoint[] = [];
  for (const { host, port } of endpoints) {
    let hosts: string[];
    if (familyOf(host) !== 0) {
      hosts = [host];
    } else {
      try {
        hosts = (await lookup(host, { all: true })).map((a) => a.address);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
        throw new TcpPunchError(code, `cannot resolve ${host}: ${(err as Error).message}`, { cause: err, host });
      }
    }
    for (const h of hosts) out.push({ host: h, port });
  }
  return dedupe(out);
}

/** `host:port`, with brackets around IPv6 hosts. */
export function formatEndpoint({ host, port }: Endpoint): string {
  return familyOf(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
