// A cluster node as a separate process (from dist/, which the test global setup builds): joins, claims the peer
// ids it is given, prints "ready", and then records what it receives on stdout until it is killed.
//   node cluster-node-child.mjs REDIS_URL NODE_ID SECRET PEER_ID...
import { startCluster } from '../../dist/cluster/index.js';

const [url, nodeId, secret, ...peerIds] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const cluster = await startCluster(
  { redis: url, nodeId, secret, advertise: '127.0.0.1:7770', heartbeatMs: 200, leaseTtlMs: 3000 },
  {
    deliver: (peerId, msg, fromNode) => out({ deliver: peerId, type: msg.type, fromNode }),
    toCoordinator: () => undefined,
    leaseLost: (peerId, reason) => out({ lost: peerId, reason }),
  },
);
for (const id of peerIds) await cluster.claimPeer(id);
out({ ready: nodeId });
