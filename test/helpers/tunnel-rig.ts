/**
 * Real `tcp-punch` processes for tunnel tests: a server, an exposing side in front of a counting echo service, a
 * connecting side, and clients that send a hashed payload through the tunnel's local port.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach } from 'vitest';
import { runCli, type CliProcess } from './cli.js';
import { closeServer, listen, portOf } from './net.js';

export { freePort } from './net.js';

export { until } from './poll.js';

export const SECRET = 'rig-secret';

/** An echo service that counts the connections it was given. */
export async function countingEcho(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const server = await listen((s) => {
    n++;
    s.on('error', () => {});
    s.pipe(s);
  });
  return { server, port: portOf(server), connections: () => n };
}

export function serve(port: number, extra: string[] = []): CliProcess {
  return runCli(['serve', '--json', '--host', '127.0.0.1', '--port', String(port), '--no-probe', '--secret', SECRET, ...extra]);
}

export function expose(serverPort: number, id: string, to: number, extra: string[] = [], env: NodeJS.ProcessEnv = {}): CliProcess {
  return runCli(['expose', '--json', '--verbose', '--no-probe', '--server', `127.0.0.1:${serverPort}`, '--secret', SECRET, '--id', id, '--to', `127.0.0.1:${to}`, ...extra], env);
}

export function connectTo(serverPort: number, peer: string, extra: string[] = []): CliProcess {
  return runCli(['connect', '--json', '--verbose', '--no-probe', '--server', `127.0.0.1:${serverPort}`, '--secret', SECRET, '--peer', peer, '--listen', '127.0.0.1:0', ...extra]);
}

/**
 * One client: sends `bytes` random bytes (containing `marker` if given) through 127.0.0.1:port, half-closes,
 * and resolves whether the echo came back complete and hash-equal, with how long it took.
 */
export async function client(port: number, bytes = 64 * 1024, marker?: string, timeoutMs = 30_000): Promise<{ ok: boolean; ms: number; got: number }> {
  const started = Date.now();
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const payload = randomBytes(bytes);
  if (marker) for (let i = 0; i + marker.length <= bytes; i += 4096) payload.write(marker, i);
  const want = createHash('sha256').update(payload).digest('hex');
  const h = createHash('sha256');
  let got = 0;
  socket.on('data', (d: Buffer) => {
    h.update(d);
    got += d.length;
  });
  socket.end(payload);
  const ended = await Promise.race([
    new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))),
    sleep(timeoutMs).then(() => false),
  ]);
  socket.destroy();
  return { ok: ended && got === bytes && h.digest('hex') === want, ms: Date.now() - started, got };
}

/** Open descriptors of a process. */
export function fdsOf(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Events named `name` seen so far. */
export function count(p: CliProcess, name: string): number {
  return p.events.filter((e) => e.event === name).length;
}

/**
 * What one test file starts, stopped after each of its tests: `track` a process (SIGKILLed, newest first), `defer`
 * anything else, `echo()` a counting echo service that is closed with them.
 */
export function useRig(): {
  track: <T extends CliProcess>(p: T) => T;
  defer: (close: () => Promise<void> | void) => void;
  echo: () => ReturnType<typeof countingEcho>;
} {
  let procs: CliProcess[] = [];
  let closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const p of procs.reverse()) await p.stop('SIGKILL');
    for (const c of closers) await c();
    procs = [];
    closers = [];
  });
  const defer = (close: () => Promise<void> | void): void => void closers.push(close);
  return {
    track: (p) => (procs.push(p), p),
    defer,
    echo: async () => {
      const e = await countingEcho();
      defer(() => closeServer(e.server));
      return e;
    },
  };
}
