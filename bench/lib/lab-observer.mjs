// @ts-check
/**
 * The observer of the NAT-lab connect benchmark, run in the lab's server namespace: it tells every client the
 * address and port its connection came from ("ip:port\n", i.e. the NAT's public mapping) and keeps the connection
 * open until the client closes it. Prints "listening <port>" once ready; exits when stdin closes.
 */
import net from 'node:net';

const server = net.createServer((s) => {
  s.on('error', () => {});
  s.write(`${s.remoteAddress}:${s.remotePort}\n`);
});
server.listen({ host: '0.0.0.0', port: Number(process.argv[2] ?? 0) }, () => {
  process.stdout.write(`listening ${/** @type {net.AddressInfo} */ (server.address()).port}\n`);
});
process.stdin.on('end', () => process.exit(0)).resume();
setTimeout(() => process.exit(0), 30 * 60_000).unref(); // hard lifetime
