/**
 * Runs the real `tcp-punch` command (dist/cli/main.js) as a child process and reads its JSON log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliProcess {
  child: ChildProcess;
  /** Every JSON log event so far. */
  events: Record<string, unknown>[];
  /** Everything the process wrote (stdout and stderr), for failure messages. */
  output(): string;
  /** Resolves the first event named `name` (already seen or future); rejects if the process exits first. */
  waitFor(name: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends `signal` and resolves the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Record<string, unknown>[] = [];
  const lines: string[] = [];
  const waiters: { name: string; resolve: (e: Record<string, unknown>) => void }[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line);
      if (!line.startsWith('{')) return;
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        events.push(e);
        for (const w of waiters.filter((w) => w.name === e.event)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      } catch {
        // not a log line
      }
    });
  }
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    events,
    output: () => lines.join('\n'),
    exited,
    waitFor(name, timeoutMs = 30_000) {
      const seen = events.find((e) => e.event === name);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${name}" event in ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
        waiters.push({ name, resolve: (e) => (clearTimeout(timer), resolve(e)) });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`exited (${code}) before "${name}":\n${lines.join('\n')}`));
        });
      });
    },
    async stop(signal = 'SIGINT') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Runs the command to completion. */
export async function runCliToEnd(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const p = runCli(args, env);
  const code = await p.exited;
  return { code, output: p.output() };
}
