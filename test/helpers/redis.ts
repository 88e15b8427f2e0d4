/**
 * A real redis-server for tests: started on a free loopback port with no persistence, stopped (or killed and
 * started again on the same port, to test a Redis restart) by the test that owns it.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';

/** Why the Redis tests cannot run here, or undefined when redis-server is installed. */
export const redisMissing: string | undefined = (() => {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : 'redis-server not found (install it: apt-get install -y redis-server)';
})();

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** True when something on `port` answers PING with +PONG. */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}

/** One redis-server process the test controls. */
export class TestRedis {
  private proc: ChildProcess | undefined;

  private constructor(readonly port: number) {}

  /** The URL clients connect to. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts redis-server on a free port (or on `port`) and waits until it answers. */
  static async start(port?: number): Promise<TestRedis> {
    // A free port can be taken by another test between the probe and redis-server's bind: try a few.
    for (let attempt = 1; ; attempt++) {
      const r = new TestRedis(port ?? (await freePort()));
      try {
        await r.start();
        return r;
      } catch (err) {
        if (port !== undefined || attempt >= 3) throw err;
      }
    }
  }

  /** (Re)starts the server on its port; resolves once it answers PING. */
  async start(): Promise<void> {
    if (this.proc) throw new Error('redis-server already running');
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${stderr}`))),
    );
    exited.catch(() => undefined);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (await Promise.race([pings(this.port), exited])) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`redis-server on port ${this.port} did not answer within 10 s`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Kills the server at once (SIGKILL: no goodbye to its clients) and waits until it is gone. */
  async kill(): Promise<void> {
    await this.stopWith('SIGKILL');
  }

  /** Stops the server (SIGTERM) and waits until it is gone. */
  async stop(): Promise<void> {
    await this.stopWith('SIGTERM');
  }

  private async stopWith(signal: NodeJS.Signals): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await gone;
  }
}
