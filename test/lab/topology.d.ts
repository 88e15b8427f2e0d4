// Types for topology.js (plain JavaScript so that `node test/lab/scenario.mjs` can run it without a build).
import type { ChildProcess, SpawnOptions, StdioOptions } from 'node:child_process';

/**
 * - cone: MASQUERADE + conntrack, endpoint-independent port-preserving mapping, address+port-dependent
 *   filtering, unsolicited inbound dropped silently (the common home router)
 * - cone-rst: the same, unsolicited inbound TCP answered with RST
 * - cone-icmp: the same, answered with ICMP port-unreachable (icmp: 'port', default) or admin-prohibited ('admin')
 * - symmetric: MASQUERADE --random-fully (endpoint-dependent mapping, random ports), silent drop
 * - full-cone: port-preserving MASQUERADE whose public ports take inbound TCP from anyone (endpoint-independent
 *   mapping and filtering): a learned-port set in nftables DNATs unsolicited SYNs to a mapped port to the host
 * - dmz: port-preserving MASQUERADE plus a port forward of every inbound TCP port to the host (a DMZ host, UPnP)
 * - public: the host has a public address behind a stateful firewall (no translation, inbound NEW dropped)
 * - open: the host has a public address and nothing filters
 * - cgnat: a carrier-grade NAT (100.64.0.0/10 inside, `cgn` mapping) in front of a home NAT (`home` behaviour)
 */
export type Behaviour = 'cone' | 'cone-rst' | 'cone-icmp' | 'symmetric' | 'full-cone' | 'dmz' | 'public' | 'open' | 'cgnat';

/**
 * Shape of an access link. delayMs is what the link adds to a round trip (each direction is held
 * delayMs/2 ± jitterMs/2); lossPct is the chance that a packet crossing the link (either direction)
 * is dropped. Packets keep their order unless reorder is set.
 */
export interface LinkShape {
  delayMs?: number;
  jitterMs?: number;
  lossPct?: number;
  reorder?: boolean;
}

export interface PeerSpec extends LinkShape {
  nat: Behaviour;
  /** cone-icmp: which ICMP answer (default 'port') */
  icmp?: 'port' | 'admin';
  /** cgnat: the carrier NAT's mapping (default 'cone') */
  cgn?: 'cone' | 'symmetric';
  /** cgnat: the home NAT behind the carrier NAT (default 'cone') */
  home?: Behaviour;
  /**
   * false: this host has no IPv6 in a lab built with `ipv6: true` (an IPv4-only network; the router keeps its
   * own IPv6 addresses). Default: the lab's `ipv6`.
   */
  ipv6?: boolean;
}

export interface LabSpec {
  a: Behaviour | PeerSpec;
  b?: Behaviour | PeerSpec;
  /** both hosts behind one NAT router (a's behaviour) on one LAN */
  sameNat?: boolean;
  /** sameNat: the router hairpins LAN → its public address:port → the LAN host owning that mapping */
  hairpin?: boolean;
  /** shape of the server's link */
  server?: LinkShape;
  /**
   * add IPv6 (2001:db8::/32, global addresses, no translation; every router becomes a stateful ip6tables firewall
   * for v6 that lets crossing SYNs through, RFC 6092): hosts are dual-stack unless their PeerSpec says `ipv6: false`
   */
  ipv6?: boolean;
  /** PRNG seed of the delay programs (default 1) */
  seed?: number;
  /** max packets each delay program holds (default 4096) */
  delayMax?: number;
  /** the server's kernel takes data in SYNs (net.ipv4.tcp_fastopen=3), as docs/DEPLOY.md asks; default true */
  fastOpen?: boolean;
}

export type NodeName = 'inet' | 'server' | 'a' | 'b' | 'nat-a' | 'nat-b' | 'cgn-a' | 'cgn-b' | 'nat' | (string & {});

export interface PeerInfo {
  /** namespace of the peer's host */
  ns: string;
  behaviour: Behaviour;
  /** the host's own IPv4 address (private behind a NAT; public for 'public'/'open') */
  ip: string;
  ip6?: string;
  /** the address the server sees for this host (NAT's / CGN's public address, or the host's own) */
  publicIp: string;
  publicIp6?: string;
  /** namespace of the home NAT / firewall router (the shared router when sameNat) */
  natNs: string;
  /** cgnat: namespace of the carrier NAT */
  cgnNs?: string;
  /** cgnat: the home NAT's address on the carrier side (100.64.x.2) */
  innerPublicIp?: string;
  /** a SYN sent with this IP TTL expires at the internet router, before the other peer's NAT */
  ttlToInternet: number;
  spec: PeerSpec;
  /** namespace of the router on the access link (the CGN for cgnat) */
  edgeNs?: string;
}

export interface ServerInfo {
  ns: string;
  ip: string;
  /** a second address of the server host (address-dependent mapping checks) */
  ip2: string;
  ip6?: string;
}

export interface DelayInfo extends LinkShape {
  link: 'a' | 'b' | 'server';
  /** interface of the internet router the link is shaped on */
  ifname: string;
  queue: number;
  child?: ChildProcess;
  /** the program's counters line (printed when it exits) */
  stats?: () => string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ExecOptions {
  input?: string;
  /** default 30 s; the process is SIGKILLed then */
  timeoutMs?: number;
  /** reject when the exit code is not 0 */
  check?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface ForkOptions {
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
  serialization?: 'json' | 'advanced';
  stdio?: StdioOptions;
}

export declare class Lab {
  /** `tpl<pid>-<n>`: prefix of every namespace of this lab */
  readonly id: string;
  readonly spec: LabSpec;
  /** node key → namespace name */
  readonly ns: Record<string, string>;
  readonly server: ServerInfo;
  readonly peers: { a: PeerInfo; b: PeerInfo };
  readonly internet: { ns: string };
  readonly delays: DelayInfo[];
  readonly sameNat: boolean;
  readonly hairpin: boolean | undefined;
  destroyed: boolean;
  /** Namespace name of a node key or a full namespace name of this lab. */
  nsName(node: NodeName): string;
  /** `ip netns exec <ns> argv…`; killed on destroy(). */
  spawn(node: NodeName, argv: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs argv in the namespace and collects output; does not throw on exit code unless `check`. */
  exec(node: NodeName, argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a Node.js module in the namespace with an IPC channel (child.send / 'message'). */
  fork(node: NodeName, modulePath: string, args?: string[], opts?: ForkOptions): ChildProcess;
  /** Runs test/lab/probe.py in the namespace. */
  python(node: NodeName, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Packets the internet router dropped for carrying private/CGNAT addresses (a NAT leaked). */
  leaks(): Promise<number>;
  /** iptables-save of every router namespace. */
  dumpRules(): Promise<Record<string, string>>;
  /** Kills the lab's processes and deletes its namespaces (and their veths). Idempotent. */
  destroy(): Promise<void>;
}

export declare const LAB_DIR: string;
export declare const PROBE_PY: string;
export declare const DELAY_SRC: string;
export declare const DELAY_BIN: string;
export declare const LAB_PREFIX: string;
export declare const BEHAVIOURS: readonly Behaviour[];

export declare function createLab(spec: LabSpec): Promise<Lab>;
export declare function cleanupStaleLabs(opts?: { all?: boolean }): string[];
export declare function listLabNamespaces(): string[];
export declare function labPrerequisites(need?: { delay?: boolean; hairpin?: boolean }): { ok: boolean; missing: string[] };
export declare function buildDelayTool(): Promise<string>;
export declare function pythonPath(): string;
