// Types for probes.js: the Python probe (probe.py) driven across lab namespaces.
import type { ChildProcess } from 'node:child_process';
import type { Lab, NodeName } from './topology.js';

export interface IcmpSeen {
  type: number;
  code: number;
  from: string;
  kind: 'unreachable' | 'time-exceeded';
}

export interface SynProbeResult {
  to: string;
  sport: number;
  outcome: 'connected' | 'rst' | 'icmp' | 'timeout' | 'error';
  errno?: string;
  icmp: IcmpSeen[];
  ms: number;
}

export interface PunchResult {
  ok: boolean;
  name: string;
  lport: number;
  attempts: number;
  /** errno names per failed attempt; "(soft)": reported by SO_ERROR but the socket kept trying */
  errors: string[];
  /** with a low first-SYN TTL: the ICMP errors about our port, as they arrived */
  icmp?: IcmpSeen[];
  /** ms from the agreed start to the connection */
  ms: number;
  via?: 'connect' | 'accept';
  observed: string | null;
  peer: string;
  remote?: string;
  local?: string;
  got?: string;
}

export interface RawPunchOptions {
  lportA?: number;
  lportB?: number;
  observerPort?: number;
  ipv6?: boolean;
  target?: 'public' | 'private';
  startInMs?: number;
  /** b starts this much later than a */
  skewMs?: number;
  timeoutS?: number;
  attemptTimeoutS?: number;
  /** pause after a refused attempt before the next, s (default 0.2) */
  retryGapS?: number;
  /** TTL of each side's first short SYN; 'auto': each peer's ttlToInternet */
  ttl?: number | 'auto';
}

export declare function ep(host: string, port: number): string;
export declare function parseEp(s: string): { host: string; port: number };
export declare function probe(lab: Lab, node: NodeName, args: string[], timeoutMs?: number): Promise<any>;
export declare function startObserver(
  lab: Lab,
  o?: { ports?: number[]; ipv6?: boolean; node?: NodeName; lifetimeS?: number },
): Promise<{ ports: number[]; child: ChildProcess; accepts: () => { local: number; from: string }[]; stop: () => void }>;
export declare function observeMapping(lab: Lab, who: NodeName, lport: number, servers: string[], o?: { holdS?: number }): Promise<string[]>;
export declare function synProbe(lab: Lab, node: NodeName, to: string, o?: { sport?: number; timeoutS?: number }): Promise<SynProbeResult>;
export declare function ttlProbe(lab: Lab, node: NodeName, to: string, ttl: number): Promise<{ icmp: IcmpSeen[] }>;
export declare function connectRtt(lab: Lab, node: NodeName, to: string, count?: number): Promise<{ samples: number[]; median: number | null }>;
export declare function startUdpEcho(lab: Lab, node: NodeName, port: number): Promise<{ child: ChildProcess; stop: () => void }>;
export declare function udpPing(
  lab: Lab,
  node: NodeName,
  to: string,
  o?: { count?: number; intervalMs?: number; waitS?: number },
): Promise<{ sent: number; received: number; lost: number; inversions: number; rtt_median: number | null; rtt_min: number | null; rtt_max: number | null }>;
export declare function rawPunch(lab: Lab, o?: RawPunchOptions): Promise<{ a: PunchResult; b: PunchResult; observed: { a: string; b: string } }>;
