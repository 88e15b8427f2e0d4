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
 *
 * Filtering: while it connects, the local port also listens, and the second probe connects back from another
 * port of the server to the mapping it observed. If that connection arrives, a SYN from a port nobody contacted
 * gets in (`open`: no NAT, a full cone, a DMZ or port forward, an address-restricted cone); if none arrives within
 * a few round trips, the NAT or firewall filters by port (`port-dependent`). A server whose probes do not connect
 * back also yields `port-dependent`: the cautious answer.
 */
import type { Server, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { readMessage } from '../protocol/stream.js';
import { unmapAddress } from '../protocol/fields.js';
import { bindReusable, listenReusable } from '../reusable-port.js';
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
  /** Whether the second probe's connection back to the observed mapping reached the local port. */
  connectedBack: boolean;
}

export interface NatCheckResult {
  /** `none`: the server saw our own address and port. */
  nat: 'none' | 'present';
  mapping: 'endpoint-independent' | 'endpoint-dependent' | 'mixed';
  portPreserving: boolean;
  /**
   * `open`: a connection from another port of the server reached the local port in every round (a symmetric
   * peer can punch in); `port-dependent`: in none; `mixed`: in some.
   */
  filtering: 'open' | 'port-dependent' | 'mixed';
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
    let listener: Server | undefined;
    try {
      listener = await listenReusable(port.local);
      const back = connectionFrom(listener, resolved.host);
      const observed: Endpoint[] = [];
      let local: Endpoint | undefined;
      let rttMs = 0;
      for (const probe of probePorts) {
        const t0 = performance.now();
        const socket = await port.connect({ host: resolved.host, port: probe }, { timeoutMs, ...(signal ? { signal } : {}) });
        rttMs = Math.max(rttMs, performance.now() - t0);
        try {
          local ??= { host: socket.localAddress ?? port.address, port: port.port };
          const msg = await readMessage(socket, { timeoutMs, ...(signal ? { signal } : {}) });
          if (msg.type !== 'observed') throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `probe answered with ${msg.type}`);
          observed.push(msg.endpoint);
        } finally {
          socket.destroy();
        }
      }
      // The probe connects back as soon as it has answered: its SYN trails the answer by about nothing.
      const connectedBack = await Promise.race([back, sleep(backWaitMs(rttMs), false, signal ? { signal } : {})]);
      results.push({ local: local!, observed: [observed[0]!, observed[1]!], connectedBack });
    } finally {
      listener?.close();
      port.close();
    }
  }
  return summarize(results);
}

/** How long to wait for the probe's connection back after its answer: a few round trips, at least 250 ms. */
function backWaitMs(rttMs: number): number {
  return Math.max(250, 3 * rttMs);
}

/** Resolves true on the first connection from `host`; others (and that one) are closed at once. */
function connectionFrom(listener: Server, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    listener.on('connection', (s: Socket) => {
      const from = unmapAddress(s.remoteAddress);
      s.on('error', () => undefined);
      s.destroy();
      if (from === host) resolve(true);
    });
  });
}

function summarize(rounds: NatCheckRound[]): NatCheckResult {
  const same = (a: Endpoint, b: Endpoint): boolean => a.host === b.host && a.port === b.port;
  const independent = rounds.filter((r) => same(r.observed[0], r.observed[1])).length;
  const mapping = independent === rounds.length ? 'endpoint-independent' : independent === 0 ? 'endpoint-dependent' : 'mixed';
  const nat = rounds.every((r) => same(r.local, r.observed[0])) ? 'none' : 'present';
  const portPreserving = rounds.every((r) => r.observed[0].port === r.local.port);
  const back = rounds.filter((r) => r.connectedBack).length;
  const filtering = back === rounds.length ? 'open' : back === 0 ? 'port-dependent' : 'mixed';
  const publicAddresses = [...new Set(rounds.flatMap((r) => r.observed.map((o) => o.host)))];
  const verdict =
    nat === 'none'
      ? 'no NAT between you and the server: peers can reach you directly if no firewall filters them'
      : mapping === 'endpoint-independent'
        ? 'endpoint-independent mapping: TCP hole punching should work'
        : mapping === 'endpoint-dependent'
          ? 'endpoint-dependent (symmetric) mapping: punching works only towards peers whose NAT lets any port in (a full cone, a DMZ); other connections use the relay'
          : 'inconsistent mapping: punching may work sometimes; the relay covers the rest';
  return { nat, mapping, portPreserving, filtering, publicAddresses, rounds, verdict };
}
