/**
 * Helpers for the pump and relay tests: pairs of loopback connections whose server ends go into a pump.
 */
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

/** A loopback server whose accepted sockets are queued for {@link Acceptor.pair}. */
export class Acceptor {
  readonly server: Server;
  private readonly queue: Socket[] = [];
  private readonly waiters: ((s: Socket) => void)[] = [];

  constructor() {
    this.server = createServer({ allowHalfOpen: true }, (s) => {
      const w = this.waiters.shift();
      if (w) w(s);
      else this.queue.push(s);
    });
  }

  async listen(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return this;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private accepted(): Promise<Socket> {
    const s = this.queue.shift();
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** A connected pair: `client` (allowHalfOpen) and the server's end of it. */
  async pair(): Promise<{ client: Socket; server: Socket }> {
    const client = connect({ port: this.port, host: '127.0.0.1', allowHalfOpen: true });
    const [server] = await Promise.all([this.accepted(), once(client, 'connect')]);
    return { client, server };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Collects everything a socket receives until it ends or fails. */
export function collect(socket: Socket): Promise<{ data: Buffer; error?: string }> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    let error: string | undefined;
    socket.once('error', (err: NodeJS.ErrnoException) => (error = err.code ?? 'ERR'));
    socket.once('end', () => resolve({ data: Buffer.concat(chunks) }));
    socket.once('close', () => resolve(error === undefined ? { data: Buffer.concat(chunks) } : { data: Buffer.concat(chunks), error }));
  });
}

/** Writes random data until the socket fails or closes, or `max` bytes are written; resolves the count. */
export async function writeUntilClosed(socket: Socket, max = 1 << 30): Promise<number> {
  const chunk = randomBytes(64 * 1024);
  let sent = 0;
  let closed = false;
  socket.once('close', () => (closed = true));
  socket.on('error', () => {});
  while (!closed && !socket.destroyed && sent < max) {
    const ok = socket.write(chunk);
    sent += chunk.length;
    if (!ok) await drainOrClose(socket);
  }
  return sent;
}

/** Resolves on 'drain' or 'close', whichever comes first; never rejects. */
function drainOrClose(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/**
 * How a socket's stream ended: its error code, 'end' for an EOF, or 'close' if it closed without either.
 * Note that a RST arriving while received bytes are still unread surfaces in Node as an EOF (libuv reports
 * POLLHUP after a partial read as end of stream), so a reset peer may see 'end' here.
 */
export function outcome(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let code: string | undefined;
    socket.on('error', (err: NodeJS.ErrnoException) => {
      code ??= err.code ?? 'ERR';
      resolve(code);
    });
    socket.once('end', () => resolve(code ?? 'end'));
    socket.once('close', () => resolve(code ?? 'close'));
    socket.resume();
  });
}
