// The CLI tunnel through real NATs: `tcp-punch serve` on the lab's server, `tcp-punch expose` behind NAT A in
// front of an iperf3 server, `tcp-punch connect` behind NAT B, and a real program (iperf3) through the local port.
// Direct where the NATs allow it (cone × cone), over the relay where they do not (cone × symmetric).
//
// Root only (network namespaces, iptables); iperf3 from Debian (installed by .ci/run).
//   npx vitest run test/lab/tunnel.test.ts
import { execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { labSkipNote } from '../helpers/skip-note.js';
import { createLab, labPrerequisites, type Lab, type LabSpec } from './topology.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const IPERF_PORT = 5201;
const SERVER_PORT = 7770;
const LOCAL_PORT = 15201;

function hasIperf3(): boolean {
  try {
    execFileSync('iperf3', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const pre = labPrerequisites();
const ready = pre.ok && hasIperf3();

/** A CLI process in a namespace whose JSON log events can be awaited. */
function cli(lab: Lab, node: Parameters<Lab['spawn']>[0], args: string[]) {
  const child: ChildProcess = lab.spawn(node, [process.execPath, CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Record<string, unknown>[] = [];
  const lines: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line);
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    });
  }
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    events,
    async waitFor(event: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const e = events.find((x) => x.event === event);
        if (e) return e;
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no "${event}" from tcp-punch ${args[0]}:\n${lines.join('\n')}`);
    },
    async stop(): Promise<number | null> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return exited;
    },
  };
}

function scenario(name: string, spec: LabSpec, expectedPath: 'direct' | 'relay'): void {
  describe.skipIf(!ready)(`tunnel ${name}`, labSkipNote(hasIperf3() ? pre.missing : [...pre.missing, 'iperf3']), () => {
    let lab: Lab;
    let procs: ReturnType<typeof cli>[] = [];
    let iperfServer: ChildProcess | undefined;

    beforeAll(async () => {
      lab = await createLab(spec);
      iperfServer = lab.spawn('a', ['iperf3', '-s', '-B', '127.0.0.1', '-p', String(IPERF_PORT)], { stdio: 'ignore' });
      const server = cli(lab, 'server', [
        // A 2-second iperf3 run moves more than the default 128 MiB per relayed session: lift the byte limit.
        'serve', '--host', lab.server.ip, '--port', String(SERVER_PORT), '--no-probe', '--relay-max-bytes', '0',
      ]);
      procs.push(server);
      await server.waitFor('listening');
      const to = `127.0.0.1:${IPERF_PORT}`;
      const expose = cli(lab, 'a', ['expose', '--server', `${lab.server.ip}:${SERVER_PORT}`, '--id', 'iperf', '--public', '--to', to]);
      procs.push(expose);
      await expose.waitFor('exposing');
      const connect = cli(lab, 'b', [
        'connect', '--server', `${lab.server.ip}:${SERVER_PORT}`, '--peer', 'iperf', '--listen', `127.0.0.1:${LOCAL_PORT}`, '--pool', '1',
      ]);
      procs.push(connect);
      await connect.waitFor('listening');
    });

    afterAll(async () => {
      for (const p of procs.reverse()) await p.stop();
      procs = [];
      iperfServer?.kill();
      await lab?.destroy();
    });

    it(`carries iperf3 both ways over the ${expectedPath} path`, async () => {
      const connect = procs[2]!;
      for (const reverse of [false, true]) {
        const r = await lab.exec('b', ['iperf3', '-c', '127.0.0.1', '-p', String(LOCAL_PORT), '-t', '2', '-J', ...(reverse ? ['-R'] : [])], {
          timeoutMs: 60_000,
        });
        expect(r.code, r.stderr || r.stdout.slice(0, 500)).toBe(0);
        const report = JSON.parse(r.stdout) as { end: { sum_received: { bytes: number } }; error?: string };
        expect(report.error).toBeUndefined();
        expect(report.end.sum_received.bytes).toBeGreaterThan(0);
      }
      const opens = connect.events.filter((e) => e.event === 'tunnel-open');
      expect(opens.length).toBeGreaterThanOrEqual(2); // iperf3 opens a control and a data connection per run
      for (const e of opens) expect(e.path).toBe(expectedPath);
    });
  });
}

scenario('cone × cone', { a: 'cone', b: 'cone' }, 'direct');
scenario('cone × symmetric', { a: 'cone', b: 'symmetric' }, 'relay');
