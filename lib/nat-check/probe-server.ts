/**
 * Mapping probes (RFC 5780 style, for TCP): listeners that answer every connection with one `observed` frame —
 * the source address and port they saw — and close it. Two of them on different ports let a client tell whether
 * its NAT keeps the same public mapping for one local port towards different destinations.
 *
 * The last listener also tells the client about its filtering: right after its answer it connects back from
 * another port of the same address to the endpoint it observed, and closes that connection as soon as it is
 * established, without a byte (the client listens on its port and counts whether it arrived; see checkNat).
 *
 * A probe never reads what the client sends, and connects only back to the source of a connection that just
 * completed its handshake with it, at most once per such connection: it cannot be aimed at anyone else, nor used
 * as a proxy.
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { encodeMessage } from '../protocol/messages.js';
import { unmapAddress } from '../protocol/fields.js';

export interface ProbeServerOptions {
  /** Address to listen on; default all addresses. */
  host?: string;
  /** Ports to listen on (0 = any); default two system-chosen ports. */
  ports?: number[];
  /** Connections open at once, all probes together (connections back included); extra ones are closed unanswered. Default 1024. */
  maxConnections?: number;
}

/** Deadline of a connection back to a client's mapping (a filtering NAT drops the SYN: nobody answers). */
const BACK_TIMEOUT_MS = 3000;

/** Running probe listeners; `ports` lists where they listen. */
export interface ProbeServer {
  readonly ports: number[];
  close(): Promise<void>;
}

export async function startProbeServer({ host, ports = [0, 0], maxConnections = 1024 }: ProbeServerOptions = {}): Promise<ProbeServer> {
  const servers: Server[] = [];
  let open = 0;
  try {
    const connectBack = (socket: Socket, to: { host: string; port: number }): void => {
      if (open >= maxConnections || !socket.localAddress) return;
      open++;
      const back = connect({ host: to.host, port: to.port, localAddress: unmapAddress(socket.localAddress), timeout: BACK_TIMEOUT_MS });
      back.once('close', () => open--);
      back.on('error', () => undefined);
      back.once('connect', () => back.destroy());
      back.once('timeout', () => back.destroy());
    };
    for (const [i, port] of ports.entries()) {
      const last = i === ports.length - 1;
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
        if (last) connectBack(socket, endpoint);
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
