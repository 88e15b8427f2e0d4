/**
 * Mapping probes (RFC 5780 style, for TCP): listeners that answer every connection with one `observed` frame —
 * the source address and port they saw — and close it. Two of them on different ports let a client tell whether
 * its NAT keeps the same public mapping for one local port towards different destinations.
 *
 * A probe never reads what the client sends and never connects anywhere: it cannot be used as a proxy.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { encodeMessage } from '../protocol/messages.js';
import { unmapAddress } from '../protocol/fields.js';

export interface ProbeServerOptions {
  /** Address to listen on; default all addresses. */
  host?: string;
  /** Ports to listen on (0 = any); default two system-chosen ports. */
  ports?: number[];
  /** Connections open at once, all probes together; extra connections are closed unanswered. Default 1024. */
  maxConnections?: number;
}

/** Running probe listeners; `ports` lists where they listen. */
export interface ProbeServer {
  readonly ports: number[];
  close(): Promise<void>;
}

export async function startProbeServer({ host, ports = [0, 0], maxConnections = 1024 }: ProbeServerOptions = {}): Promise<ProbeServer> {
  const servers: Server[] = [];
  let open = 0;
  try {
    for (const port of ports) {
      const server = createServer((socket) => {
        socket.on('error', () => {});
        if (open >= maxConnections) {
          socket.destroy();
          return;
        }
        open++;
        socket.once('close', () => open--);
        // A client that never reads cannot hold the connection: the frame is tiny and the socket goes after 5 s.
        socket.setTimeout(5000, () => socket.destroy());
        const endpoint = { host: unmapAddress(socket.remoteAddress), port: socket.remotePort ?? 0 };
        socket.end(encodeMessage({ type: 'observed', endpoint }));
      });
      server.on('error', () => {});
      servers.push(server);
      server.listen(port, host);
      await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
    }
  } catch (err) {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    throw err;
  }
  return {
    ports: servers.map((s) => (s.address() as AddressInfo).port),
    close: async () => {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}
