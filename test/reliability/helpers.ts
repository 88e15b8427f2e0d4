/**
 * The reliability suite's process harness: the server, the well-behaved peers and the attackers each run in a
 * child process of their own (harness/*.mjs, on the compiled library), so that each one's memory and descriptors
 * are measured apart and thousands of attacking sockets never count against the server's 20,000-fd limit.
 * Every request has a deadline; every child is killed when the test ends.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import type { ServerStats } from '../../lib/server/server.js';
import type { ServerOptions } from '../../lib/server/options.js';

const HARNESS = fileURLToPath(new URL('./harness/', import.meta.url));

/** A child process answering `{ type, seq }` requests with `{ type: 'reply', seq, ... }`. */
export class Child {
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ready: Record<string, unknown> = {};
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly handlers = new Map<string, ((msg: Record<string, unknown>) => void)[]>();
  private stderr = '';

  private constructor(script: string, arg: unknown) {
    this.process = fork(`${HARNESS}${script}`, [JSON.stringify(arg)], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    this.process.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.exited = once(this.process, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
    void this.exited.then(({ code, signal }) => {
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error(`${script} exited (${code ?? signal}) during a request\n${this.stderr}`));
      }
      this.pending.clear();
    });
    this.process.on('message', (m: Record<string, unknown>) => {
      if (m.type === 'reply') {
        const p = this.pending.get(m.seq as number);
        if (!p) return;
        this.pending.delete(m.seq as number);
        clearTimeout(p.timer);
        p.resolve(m);
        return;
      }
      for (const h of this.handlers.get(m.type as string) ?? []) h(m);
    });
  }

  /** Forks `script` and waits for its `ready` message (rejects on `fatal`, exit or after `timeoutMs`). */
  static async start(script: string, arg: unknown, timeoutMs = 60_000): Promise<Child> {
    const c = new Child(script, arg);
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script}: not ready in ${timeoutMs} ms\n${c.stderr}`)), timeoutMs);
      c.on('ready', (m) => (clearTimeout(timer), resolve(m)));
      c.on('fatal', (m) => (clearTimeout(timer), reject(Object.assign(new Error(`${script}: ${String(m.message)}`), { code: m.code }))));
      void c.exited.then(({ code }) => (clearTimeout(timer), reject(new Error(`${script} exited (${code}) before ready\n${c.stderr}`))));
    }).catch(async (err: unknown) => {
      await c.kill();
      throw err;
    });
    c.ready = ready;
    return c;
  }

  on(type: string, fn: (msg: Record<string, unknown>) => void): void {
    this.handlers.set(type, [...(this.handlers.get(type) ?? []), fn]);
  }

  /** Sends a request and resolves its reply; rejects at once if the process has exited (with its stderr). */
  request<T = Record<string, unknown>>(msg: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
    const seq = ++this.seq;
    if (!this.alive || !this.process.connected) {
      return Promise.reject(new Error(`child exited (${this.process.exitCode ?? this.process.signalCode}) before request ${String(msg.type)}\n${this.stderr}`));
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`request ${String(msg.type)} got no reply in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.process.send({ ...msg, seq }, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.pending.delete(seq);
        reject(new Error(`request ${String(msg.type)} could not be sent: ${err.message}\n${this.stderr}`));
      });
    });
  }

  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Kills the process (SIGKILL by default) and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.alive) this.process.kill(signal);
    await this.exited;
  }
}

/** The server child's view of itself. */
export interface ServerSnapshot {
  stats: ServerStats;
  rss: number;
  heapUsed: number;
  external: number;
  fds: number;
  peakRss: number;
  peakFds: number;
  registry: number | null;
  relayEnds: Record<string, number>;
  /** Relay sessions started, by the (sorted) pair of peer ids they connected. */
  relayPairs: Record<string, number>;
}

/** A rendezvous server (with its relay) in a child process. */
export class ServerChild {
  private constructor(
    readonly child: Child,
    readonly port: number,
  ) {}

  static async start(options: ServerOptions = {}): Promise<ServerChild> {
    const child = await Child.start('server-child.mjs', { options });
    return new ServerChild(child, child.ready.port as number);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** A snapshot; with `gc`, after a full collection (what is retained, not garbage waiting). */
  async stats(gc = false): Promise<ServerSnapshot> {
    if (gc) await this.child.request({ type: 'gc' });
    return this.child.request<ServerSnapshot>({ type: 'stats' });
  }

  async resetPeak(): Promise<void> {
    await this.child.request({ type: 'reset-peak' });
  }

  /** Graceful close(), then the process exits. */
  async close(): Promise<number> {
    if (!this.child.alive) return 0;
    const r = await this.child.request<{ closed: number }>({ type: 'close' }, 60_000).catch(() => ({ closed: -1 }));
    await Promise.race([this.child.exited, sleep(5000)]);
    await this.child.kill();
    return r.closed;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return this.child.kill(signal);
  }
}

/** Aggregate outcome of dials, as fleet-child.mjs reports it. */
export interface DialAggregate {
  dials: number;
  ok: number;
  failed: number;
  codes: Record<string, number>;
  byStrategy: Record<string, { ok: number; failed: number }>;
  byPath: Record<string, number>;
  bytesChecked: number;
  /** Exchange failures with every payload byte received: reset or stuck at the very end of the stream. */
  failedAtEnd: number;
  dialMs: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  samples: { code: string; message: string; strategy: string; stage: string; received?: number; expected?: number }[];
}

export interface FleetSnapshot {
  fds: number;
  rss: number;
  heapUsed: number;
  online: number;
  incoming: {
    ok: number;
    failed: number;
    bytesChecked: number;
    codes: Record<string, number>;
    byPath: Record<string, number>;
    samples: { code?: string; reason?: string; path: string; upgradable: boolean }[];
    failedAtEnd: number;
  };
  events: { online: number; offline: number; close: number; upgrade: number; relayEnd: Record<string, number>; offlineCodes: Record<string, number> };
}

export interface FleetConfig {
  server: string;
  peers: { id: string; localAddress?: string }[];
  secret?: string;
  reconnect?: boolean | { minDelayMs?: number; maxDelayMs?: number };
  incomingBytes?: number;
  exchangeTimeoutMs?: number;
}

export interface DialOutcome {
  ok: boolean;
  strategy: string;
  path?: string;
  code?: string;
  message?: string;
  dialMs: number;
  sent?: number;
  received?: number;
}

/** Well-behaved peers in a child process. */
export class Fleet {
  private constructor(readonly child: Child) {}

  static async start(config: FleetConfig): Promise<Fleet> {
    return new Fleet(await Child.start('fleet-child.mjs', config));
  }

  dial(from: string, to: string, strategy: string, bytes = 64 * 1024, timeoutMs = 15_000): Promise<DialOutcome> {
    return this.child.request<DialOutcome>({ type: 'dial', from, to, strategy, bytes, timeoutMs }, timeoutMs + 60_000);
  }

  run(plan: {
    dialsPerPeer: number;
    strategies: string[];
    bytes: number;
    ratePerSec: number;
    concurrency: number;
    maxDurationMs: number;
    timeoutMs: number;
  }): Promise<DialAggregate & { planned: number; skipped: number; maxInFlight: number; wallMs: number }> {
    return this.child.request({ type: 'run', plan }, plan.maxDurationMs + plan.timeoutMs + 120_000);
  }

  async loopStart(loop: {
    pairs: [string, string][];
    strategies: string[];
    bytes: number;
    pauseMs: number;
    maxDials: number;
    maxDurationMs: number;
    timeoutMs: number;
  }): Promise<void> {
    await this.child.request({ type: 'loop-start', loop });
  }

  loopStop(): Promise<DialAggregate> {
    return this.child.request<DialAggregate>({ type: 'loop-stop' }, 180_000);
  }

  async set(values: { acceptDelayMs?: number; incomingBytes?: number; leakTokens?: boolean; spreadMs?: number }): Promise<void> {
    await this.child.request({ type: 'set', ...values });
  }

  waitOnline(timeoutMs: number): Promise<{ online: number; ms: number }> {
    return this.child.request({ type: 'wait-online', timeoutMs }, timeoutMs + 10_000);
  }

  stats(): Promise<FleetSnapshot> {
    return this.child.request<FleetSnapshot>({ type: 'stats' });
  }

  async close(): Promise<void> {
    if (this.child.alive) await this.child.request({ type: 'close' }, 30_000).catch(() => undefined);
    await Promise.race([this.child.exited, sleep(3000)]);
    await this.child.kill();
  }
}

/** The attacker process (harness/attacker-child.mjs). */
export class Attacker {
  private constructor(readonly child: Child) {}

  static async start(): Promise<Attacker> {
    return new Attacker(await Child.start('attacker-child.mjs', {}));
  }

  attack<T = Record<string, unknown>>(kind: string, params: Record<string, unknown>, timeoutMs = 180_000): Promise<T> {
    return this.child.request<T>({ type: kind, ...params }, timeoutMs);
  }

  async close(): Promise<void> {
    await this.child.kill();
  }
}

/** `n` loopback source addresses 127.0.<block>.1.. for attackers (the well-behaved peers use 127.0.0.x). */
export function attackerIps(n: number, block = 1): string[] {
  return Array.from({ length: n }, (_, i) => `127.0.${block + Math.floor(i / 250)}.${(i % 250) + 1}`);
}

/** Polls `probe` every `everyMs` until stopped, keeping the maxima of the numbers it returns. */
export function sampler<T extends Record<string, number>>(probe: () => Promise<T>, everyMs = 200): { stop(): Promise<{ max: Partial<T>; samples: number }> } {
  let running = true;
  const max: Partial<T> = {};
  let samples = 0;
  const loop = (async () => {
    while (running) {
      try {
        const v = await probe();
        samples++;
        for (const [k, n] of Object.entries(v)) if (!(k in max) || n > (max[k] as number)) (max as Record<string, number>)[k] = n;
      } catch {
        // the process may be restarting
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { max, samples };
    },
  };
}

export const MB = 1024 * 1024;
export const mb = (n: number): number => Math.round((n / MB) * 10) / 10;

/** The well-behaved pair's ids and addresses (127.0.0.2 and .3; relay joins come from 127.0.0.1). */
export const CANARY_PEERS = [
  { id: 'canary-a', localAddress: '127.0.0.2' },
  { id: 'canary-b', localAddress: '127.0.0.3' },
];

/** Every built-in dial strategy. */
export const ALL_STRATEGIES = ['direct', 'relay', 'direct-first', 'relay-first'];

/**
 * The strategies the well-behaved pair and the load cycle through, whose every stream must succeed: all of them.
 * (relay-first was left out while two findings of findings.test.ts stood — a stream that ended before its upgrade
 * could fail at its very end, and the direct socket it dropped could crash the other peer's process — both fixed
 * now; load.test.ts also measures relay-first apart, with upgrades mid-stream and without.)
 */
export const STRATEGIES = ALL_STRATEGIES;

/**
 * Runs `attack` while a well-behaved pair dials each other in a loop (both directions, every strategy, 64 KiB
 * hash-checked each way) through the same server, and samples the server's memory and descriptors throughout.
 */
export async function underAttack<T>(
  srv: ServerChild,
  attack: (ctx: { leaked: string[] }) => Promise<T>,
  options: { maxDurationMs?: number; bytes?: number; pauseMs?: number; leakTokens?: boolean } = {},
): Promise<{ attack: T; canary: DialAggregate; incoming: FleetSnapshot['incoming']; server: { before: ServerSnapshot; peak: { rss: number; fds: number; connections: number }; after: ServerSnapshot }; wallMs: number }> {
  const fleet = await Fleet.start({ server: srv.address, peers: CANARY_PEERS });
  // An on-path observer's view: the relay tokens the server sends the pair (the control connection is not
  // encrypted), for attacks that replay them.
  const leaked: string[] = [];
  fleet.child.on('leak', (m) => void leaked.push(m.token as string));
  try {
    if (options.leakTokens) await fleet.set({ leakTokens: true });
    // Warm up every path once, so that what the first relayed session creates for good (the native pump's thread
    // and its epoll descriptors) is part of the baseline.
    for (const strategy of STRATEGIES) {
      const w = await fleet.dial('canary-a', 'canary-b', strategy);
      if (!w.ok) throw new Error(`warm-up dial (${strategy}) failed: ${w.code} ${w.message}`);
    }
    const before = await settleServer(srv, 0, 1000);
    await srv.resetPeak();
    const s = sampler(async () => {
      const x = await srv.stats();
      return { rss: x.rss, fds: x.fds, connections: x.stats.connections };
    });
    const t0 = performance.now();
    await fleet.loopStart({
      pairs: [
        ['canary-a', 'canary-b'],
        ['canary-b', 'canary-a'],
      ],
      strategies: STRATEGIES,
      bytes: options.bytes ?? 64 * 1024,
      pauseMs: options.pauseMs ?? 20,
      maxDials: 100_000,
      maxDurationMs: options.maxDurationMs ?? 600_000,
      timeoutMs: 15_000,
    });
    let result: T;
    let canary: DialAggregate;
    try {
      result = await attack({ leaked });
    } finally {
      // stop the canary even if the attack threw
      canary = await fleet.loopStop();
    }
    const wallMs = Math.round(performance.now() - t0);
    const sampled = await s.stop();
    // The acceptor's side of the last exchanges may still be finishing: wait (bounded) for it to catch up.
    let fs = await fleet.stats();
    for (let i = 0; i < 50 && fs.incoming.ok + fs.incoming.failed < canary.ok; i++) {
      await sleep(100);
      fs = await fleet.stats();
    }
    const after = await settleServer(srv, netFds(before));
    return {
      attack: result,
      canary,
      incoming: fs.incoming,
      server: {
        before,
        peak: { rss: Math.max(sampled.max.rss ?? 0, after.peakRss), fds: Math.max(sampled.max.fds ?? 0, after.peakFds), connections: sampled.max.connections ?? 0 },
        after,
      },
      wallMs,
    };
  } finally {
    await fleet.close();
  }
}

/**
 * The server's descriptors that belong to connections and sessions: all of them minus the native pump's idle pipes
 * (a pool it keeps for reuse, two descriptors each, bounded by the pump's configuration).
 */
export function netFds(s: ServerSnapshot): number {
  return s.fds - 2 * (s.stats.relay?.pump.pipesIdle ?? 0);
}

/**
 * Waits (bounded) until the server's connection descriptors ({@link netFds}) are back to `fds` (or below) and
 * returns the snapshot, taken after a full GC. `fds` = 0 waits the whole bound for the count to stop changing.
 */
export async function settleServer(srv: ServerChild, fds: number, maxWaitMs = 15_000): Promise<ServerSnapshot> {
  const until = performance.now() + maxWaitMs;
  let s = await srv.stats(true);
  let last = netFds(s);
  while (performance.now() < until && (fds > 0 ? netFds(s) > fds : true)) {
    await sleep(100);
    s = await srv.stats();
    if (fds === 0 && netFds(s) === last) break;
    last = netFds(s);
  }
  return srv.stats(true);
}
