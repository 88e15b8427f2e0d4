// Types for matrix-driver.js (plain JavaScript so that scenario.mjs can run it without a build).
import type { Lab } from './topology.js';

export declare const PEER_CHILD: string;
export declare const SERVER_CHILD: string;
export declare const SERVER_PORT: number;
export declare const SECRET: string;

export declare const PROBE_PORTS: [number, number];

export interface PunchTuning {
  retryDelayMs?: number;
  ttl?: number;
}

export interface PairOptions {
  /** ServerOptions (JSON) merged over `{ host: lab.server.ip, port: 7000, secret }` */
  server?: Record<string, unknown>;
  /** Peer `punch` option per side */
  punch?: { a?: PunchTuning; b?: PunchTuning };
  /** any other PeerOptions (JSON) per side */
  peer?: { a?: Record<string, unknown>; b?: Record<string, unknown> };
  /** run the server on the lab's IPv6 address and register the peers over IPv6 (lab built with ipv6: true) */
  ipv6?: boolean;
  /** bound on the server's and peers' start-up (default 15000 ms) */
  readyTimeoutMs?: number;
  /** false: no NAT probe ports on the server, no natProbe on the peers (default: both, ports 7011/7012) */
  natProbe?: boolean;
}

export interface DialParams {
  /** dial strategy name (default: the library's default) */
  strategy?: string;
  /** dial deadline (default 15000 ms) */
  timeoutMs?: number;
  /** bytes sent each way after the dial (default 1 MiB) */
  bytes?: number;
}

export interface AttemptBrief {
  attempt: number;
  outcome: string;
  code: string | null;
  mode: 'sync' | 'reverse' | 'relay' | null;
  route: 'public' | 'private' | 'hairpin' | null;
  /** from the server's prepare to the outcome */
  ms: number | null;
  message?: string;
}

export interface DialRecord {
  from: 'a' | 'b';
  to: 'a' | 'b';
  /** connected, both sides got the data, hashes match both ways */
  ok: boolean;
  /** `direct`, `relay`, or `failed` */
  path: string;
  /** attempt that succeeded (of its path), or the number of attempts made */
  attempt: number;
  /** punch attempts (sync / reverse) the dialer made, whatever the path */
  punchAttempts: number;
  mode: 'sync' | 'reverse' | 'relay' | null;
  route: 'public' | 'private' | 'hairpin' | null;
  remote: { host: string; port: number } | null;
  /** DialResult.family: the IP version the stream runs over (null until the library reports it) */
  family: 4 | 6 | null;
  /** from dial() to the resolved socket (or the failure) */
  connectMs: number | null;
  /** from dial() to the first byte received from the other peer */
  firstByteMs: number | null;
  transferMs: number | null;
  timings: Record<string, number> | null;
  /**
   * forward: what the dialer sent arrived intact at the other peer; backward: the other way. `received` is the
   * byte count at [responder, dialer], `firstDiff` the offset of the first unexpected byte there (null: none).
   */
  integrity: {
    forward: boolean;
    backward: boolean;
    bytes: number;
    received: [number, number];
    firstDiff: [number | null, number | null];
  } | null;
  error: string | null;
  attempts: AttemptBrief[];
  responderAttempts: AttemptBrief[];
  /** packets with private addresses the internet router dropped during this dial */
  leaks: number;
  /**
   * connections the dialled peer's application got (`connection` event) for an earlier dial that failed on the
   * dialer's side, noticed during this one: a socket handed out on one side only
   */
  orphans: number;
}

export declare class LibraryPair {
  static start(lab: Lab, opts?: PairOptions): Promise<LibraryPair>;
  readonly lab: Lab;
  readonly serverAddress: string;
  dial(from: 'a' | 'b', p?: DialParams): Promise<DialRecord>;
  /** What a peer's NAT probe measured before it was ready (`unknown` for both without the probe). */
  nat(who: 'a' | 'b'): { mapping: 'unknown' | 'independent' | 'dependent'; filtering: 'unknown' | 'open' | 'port-dependent' };
  stats(): Promise<unknown>;
  close(): Promise<void>;
}
