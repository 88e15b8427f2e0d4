/**
 * checkNat(): what this network's NAT does to TCP, measured against two probe ports of a server.
 *
 * For each of a few fresh local ports, it connects from that one port to both probes (the reusable-port addon
 * lets the second connection share the port) and compares the public endpoints they saw:
 * - both the same → endpoint-independent mapping (the kind hole punching needs; RFC 5382 REQ-1);
 * - different → endpoint-dependent ("symmetric"): punching will not work, expect the relay;
 * - public port equal to the local port → port-preserving;
 * - public address equal to the local address → no NAT on the path.
 * Only the destination port varies (one server address), so an address-dependent NAT looks independent here.
 */
import { readMessage } from '../protocol/stream.js';
import { bindReusable } from '../reusable-port.js';
import type { Endpoint } from '../endpoint.js';
import { resolveEndpoints } from '../endpoint.js';
import { TcpPunchError } from '../errors.js';

export interface NatCheckOptions {
  /** The server's host. */
  host: string;
  /** Two probe ports on that host. */
  probePorts: [number, number];
  /** Local ports to test; default 3. */
  rounds?: number;
  /** Deadline per connection; default 5000 ms. */
  timeoutMs?: number;
  /** Local address to bind; default the wildcard. */
  localAddress?: string;
  /** Stops the check (it then rejects with ABORT_ERR and leaves no socket open). */
  signal?: AbortSignal;
}

export interface NatCheckRound {
  local: Endpoint;
  observed: [Endpoint, Endpoint];
}

export interface NatCheckResult {
  /** `none`: the server saw our own address and port. */
  nat: 'none' | 'present';
  mapping: 'endpoint-independent' | 'endpoint-dependent' | 'mixed';
  portPreserving: boolean;
  /** The public address(es) seen. */
  publicAddresses: string[];
  rounds: NatCheckRound[];
  /** A one-line verdict for punching. */
  verdict: string;
}

export async function checkNat(options: NatCheckOptions): Promise<NatCheckResult> {
  const { host, probePorts, rounds = 3, timeoutMs = 5000, localAddress, signal } = options;
  const [resolved] = await resolveEndpoints([{ host, port: probePorts[0] }]);
  if (!resolved) throw new TcpPunchError('ENOTFOUND', `cannot resolve ${host}`);
  const family = resolved.host.includes(':') ? 6 : 4;
  const results: NatCheckRound[] = [];
  for (let i = 0; i < rounds; i++) {
    const port = await bindReusable({ family, address: localAddress, listen: false });
    try {
      const observed: Endpoint[] = [];
      let local: Endpoint | undefined;
      for (const probe of probePorts) {
        const socket = await port.connect({ host: resolved.host, port: probe }, { timeoutMs, ...(signal ? { signal } : {}) });
        try {
          local ??= { host: socket.localAddress ?? port.address, port: port.port };
          const msg = await readMessage(socket, { timeoutMs, ...(signal ? { signal } : {}) });
          if (msg.type !== 'observed') throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `probe answered with ${msg.type}`);
          observed.push(msg.endpoint);
        } finally {
          socket.destroy();
        }
      }
      results.push({ local: local!, observed: [observed[0]!, observed[1]!] });
    } finally {
      port.close();
    }
  }
  return summarize(results);
}

function summarize(rounds: NatCheckRound[]): NatCheckResult {
  const same = (a: Endpoint, b: Endpoint): boolean => a.host === b.host && a.port === b.port;
  const independent = rounds.filter((r) => same(r.observed[0], r.observed[1])).length;
  const mapping = independent === rounds.length ? 'endpoint-independent' : independent === 0 ? 'endpoint-dependent' : 'mixed';
  const nat = rounds.every((r) => same(r.local, r.observed[0])) ? 'none' : 'present';
  const portPreserving = rounds.every((r) => r.observed[0].port === r.local.port);
  const publicAddresses = [...new Set(rounds.flatMap((r) => r.observed.map((o) => o.host)))];
  const verdict =
    nat === 'none'
      ? 'no NAT between you and the server: peers can reach you directly if no firewall filters them'
      : mapping === 'endpoint-independent'
        ? 'endpoint-independent mapping: TCP hole punching should work'
        : mapping === 'endpoint-dependent'
          ? 'endpoint-dependent (symmetric) mapping: punching will likely fail; connections will use the relay'
          : 'inconsistent mapping: punching may work sometimes; the relay covers the rest';
  return { nat, mapping, portPreserving, publicAddresses, rounds, verdict };
}
