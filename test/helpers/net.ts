/**
 * Small socket helpers shared by tests.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { expect } from 'vitest';

/** A listening server on 127.0.0.1 with a random port. */
export async function listen(onConnection: (socket: Socket) => void = () => {}, host = '127.0.0.1'): Promise<Server> {
  const server = createServer(onConnection);
  server.listen(0, host);
  await once(server, 'listening');
  return server;
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

export async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A loopback port that was free a moment ago (for processes that must be told their port). */
export async function freePort(): Promise<number> {
  const s = await listen();
  const port = portOf(s);
  await closeServer(s);
  return port;
}

/**
 * Sends `bytes` random bytes to 127.0.0.1:port in 1 MiB writes with backpressure, then ends; asserts that what
 * comes back is `prefix` followed by the same bytes.
 */
export async function roundTrip(port: number, bytes: number, prefix = ''): Promise<void> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  const payload = randomBytes(bytes);
  const back = drainHash(socket);
  for (let off = 0; off < payload.length; off += 1 << 20) {
    if (!socket.write(payload.subarray(off, off + (1 << 20)))) await once(socket, 'drain');
  }
  socket.end();
  const got = await back;
  expect(got.bytes).toBe(bytes + prefix.length);
  expect(got.hash).toBe(createHash('sha256').update(prefix).update(payload).digest('hex'));
  socket.destroy();
}

/** Reads a stream to its end and resolves the SHA-256 and length of everything received. */
export function drainHash(socket: Duplex): Promise<{ hash: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  socket.on('data', (d: Buffer) => {
    h.update(d);
    bytes += d.length;
  });
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve({ hash: h.digest('hex'), bytes }));
    socket.once('error', reject);
  });
}

/** Writes `total` random bytes in chunks with backpressure, then ends; resolves their SHA-256. */
export async function sendRandom(socket: Socket, total: number, chunk = 64 * 1024): Promise<string> {
  const h = createHash('sha256');
  let sent = 0;
  while (sent < total) {
    const buf = randomBytes(Math.min(chunk, total - sent));
    h.update(buf);
    sent += buf.length;
    if (!socket.write(buf)) await once(socket, 'drain');
  }
  socket.end();
  return h.digest('hex');
}

/** Destroys sockets and waits until each has emitted 'close'. */
export async function destroyAll(...sockets: (Socket | undefined)[]): Promise<void> {
  await Promise.all(
    sockets
      .filter((s): s is Socket => s !== undefined && !s.closed)
      .map((s) => {
        const closed = once(s, 'close');
        s.destroy();
        return closed;
      }),
  );
}
