// A rendezvous server node in cluster mode as a separate process (from dist/, which the test global setup builds):
// listens on a free loopback port, joins the cluster, prints {"port":N} and serves until it is killed. Forked
// with an IPC channel, it answers each message with its stats().
//   node cluster-server-child.mjs REDIS_URL NODE_ID SECRET
import { startServer } from '../../dist/server/index.js';

const [url, nodeId, secret] = process.argv.slice(2);
const server = await startServer({
  host: '127.0.0.1',
  secret,
  natProbe: false,
  cluster: { redis: url, nodeId, heartbeatMs: 200, leaseTtlMs: 3000 },
});
process.on('message', () => process.send?.(server.stats()));
process.on('disconnect', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
