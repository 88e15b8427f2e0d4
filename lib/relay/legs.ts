/**
 * A joiner's connection as the relay holds it between its join frame and the pump: a net.Socket (joins that came
 * through Node: the rendezvous server's port, or listenRelay without the addon) or a connection the addon holds
 * (native-legs.ts). The relay service asks only these questions of it, so both kinds pair, wait and get refused
 * alike, and a session may even pair one of each.
 */
import type { Socket } from 'node:net';

export interface JoinLeg {
  /** The peer's address as the relay saw it (IPv4-mapped IPv6 unmapped by the caller). */
  readonly ip: string;
  /** The connection ended (the peer closed it, or it failed). */
  readonly gone: boolean;
  /** Bytes arrived after the join frame (a client must wait for `relay-paired`). */
  readonly sentData: boolean;
  /** Calls `onData` at the first byte after the join, `onGone` when the connection ends; returns the undo. */
  watch(onData: () => void, onGone: () => void): () => void;
  /** Sends `frame`, stops writing, and closes once the peer has closed or after `lingerMs`. */
  refuse(frame: Buffer, lingerMs: number): void;
  /** The connection as a net.Socket, for a pump that takes sockets. The leg is then that socket. */
  socket(): Socket;
}

const noop = (): void => {};

/** A join that came in through a net.Socket. */
export class SocketLeg implements JoinLeg {
  constructor(
    private readonly s: Socket,
    readonly ip: string,
  ) {
    s.on('error', noop); // failures are handled where they matter; never an unhandled 'error'
  }
  get gone(): boolean {
    return this.s.destroyed;
  }
  get sentData(): boolean {
    return this.s.readableLength > 0;
  }
  watch(onData: () => void, onGone: () => void): () => void {
    const s = this.s;
    s.on('data', onData);
    s.on('end', onGone);
    s.on('close', onGone);
    return () => {
      s.off('data', onData);
      s.off('end', onGone);
      s.off('close', onGone);
    };
  }
  refuse(frame: Buffer, lingerMs: number): void {
    refuseSocket(this.s, frame, lingerMs);
  }
  socket(): Socket {
    return this.s;
  }
}

/** {@link JoinLeg.refuse} for a net.Socket. */
export function refuseSocket(s: Socket, frame: Buffer, lingerMs: number): void {
  if (s.destroyed) return;
  s.on('error', noop);
  s.resume(); // discard input, so the peer's FIN is seen
  if (s.writable) s.end(frame);
  setTimeout(() => s.destroy(), lingerMs).unref();
}
