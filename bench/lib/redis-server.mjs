// @ts-check
/**
 * A redis-server for the cluster benchmarks: on a free loopback port, no persistence, stopped by the caller (and
 * killed with the other children at the latest, by its lifetime).
 */
import { createServer } from 'node:net';
import { importDist, spawnTool, sleep, which } from './common.mjs';

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = /** @type {import('node:net').AddressInfo} */ (s.address()).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * Starts redis-server and resolves once it answers.
 * @param {{ lifetimeMs: number }} opts
 * @returns {Promise<{ url: string, stop(): void }>}
 */
export async function startRedis(opts) {
  if (!which('redis-server')) throw new Error('redis-server not found (apt-get install -y redis-server)');
  const port = await freePort();
  const child = spawnTool('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], opts);
  const url = `redis://127.0.0.1:${port}`;
  const { connectRedis } = await importDist('cluster/index.js');
  for (let i = 0; ; i++) {
    try {
      (await connectRedis(url, { connectTimeoutMs: 200 })).disconnect();
      break;
    } catch {
      if (i > 50 || child.exitCode !== null) throw new Error(`redis-server did not start: ${child.out.stderr}`);
      await sleep(50);
    }
  }
  return { url, stop: () => void child.kill('SIGTERM') };
}
