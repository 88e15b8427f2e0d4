/**
 * Relay joins held by the addon (native/acceptor.h): a listener on Node's loop accepts, reads and reports each
 * connection's bytes, and the connection stays an fd until the pump takes it. No net.Socket is made for a join
 * that is paired, waits or is refused; one is made only when a socket-taking pump (the JS pump) or a failed
 * start needs it. This is the cheaper half of a relay's setup cost: making and tearing down two net.Sockets per
 * session was about half of the relay's JS time.
 *
 * {@link nativeJoinsAvailable} is false where the addon is absent or predates the acceptor; listenRelay then
 * accepts through Node.
 */
import { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { type NativeEndpoint, fromNative, native as binding } from '../native.js';
import { FrameDecoder } from '../protocol/frame.js';
import { unmapAddress } from '../protocol/fields.js';
import { type Deadline, Deadlines } from './deadlines.js';
import { JOIN_FIRST_FRAME } from './frames.js';
import { CLOSED_EARLY, type FirstFrameResult, feedFirstFrame, timedOut } from './join-reader.js';
import { type JoinLeg, refuseSocket } from './legs.js';

/** The addon's acceptor functions (native/binding_accept.cc). */
interface AcceptBinding {
  acceptOnEvent(fn: (kind: number, id: number, a?: unknown, b?: unknown, c?: unknown, d?: unknown) => void): void;
  acceptListen(local: NativeEndpoint, backlog: number): NativeEndpoint & { id: number; fd: number };
  acceptClose(id: number): void;
  acceptStats(): HeldStats;
  connRefuse(id: number, bytes: Uint8Array, lingerMs: number): boolean;
  connRelease(id: number): number;
  connDestroy(id: number): void;
}

/** Counters of the connections the addon holds in this thread. */
export interface HeldStats {
  listeners: number;
  /** Accepted and not yet released, refused, destroyed or ended. */
  open: number;
  /** Lingering after a refusal. */
  refused: number;
  accepted: number;
  /** Times accepting paused for lack of fds or memory. */
  paused: number;
}

const b: AcceptBinding | undefined = (() => {
  const x = binding as Partial<AcceptBinding> | undefined;
  return typeof x?.acceptListen === 'function' && typeof x.connRelease === 'function' ? (x as AcceptBinding) : undefined;
})();

/** Whether this addon can hold relay joins itself. */
export const nativeJoinsAvailable = b !== undefined;

/** Same as Node's default listen backlog. */
const BACKLOG = 511;
const noop = (): void => {};

/** What a listener does with a connection it accepted. */
type OnAccept = (id: number, ip: string, first: Buffer | undefined) => void;
const listeners = new Map<number, OnAccept>();
/** Every connection the addon holds for this thread, by id, until it is released, refused or ends. */
const held = new Map<number, NativeLeg>();
let hooked = false;

function onEvent(kind: number, id: number, a?: unknown, bIp?: unknown, _port?: unknown, first?: unknown): void {
  if (kind === 0) {
    const accept = listeners.get(a as number);
    if (accept) accept(id, bIp as string, first as Buffer | undefined);
    else b!.connDestroy(id); // its listener closed earlier in this turn
  } else if (kind === 1) {
    held.get(id)?.data(a as Buffer);
  } else {
    const leg = held.get(id);
    held.delete(id);
    leg?.end(a as string | undefined);
  }
}

/** A join's connection held by the addon. */
export class NativeLeg implements JoinLeg {
  gone = false;
  sentData = false;
  private fd = -1;
  private sock: Socket | undefined;
  private onData: (() => void) | undefined;
  private onGone: (() => void) | undefined;
  /** Until its join frame is complete. */
  private first: { decoder: FrameDecoder; deadline: Deadline; deadlines: Deadlines; done: (r: FirstFrameResult) => void } | undefined;

  constructor(
    readonly id: number,
    readonly ip: string,
  ) {
    held.set(id, this);
  }

  /** Reads the join frame from `chunk` and what follows; `done` gets it, or why it failed, exactly once. */
  readFirst(chunk: Buffer | undefined, deadlines: Deadlines, done: (r: FirstFrameResult) => void): void {
    const decoder = new FrameDecoder({ maxFrameSize: JOIN_FIRST_FRAME.maxFrameSize });
    const r = chunk && feedFirstFrame(decoder, chunk, JOIN_FIRST_FRAME);
    if (r) return done(r);
    const deadline = deadlines.add(() => this.settle({ code: 'ETIMEDOUT', message: timedOut(deadlines) }));
    this.first = { decoder, deadline, deadlines, done };
  }

  private settle(r: FirstFrameResult): void {
    const f = this.first!;
    this.first = undefined;
    f.deadlines.cancel(f.deadline);
    f.done(r);
  }

  /** @internal More bytes (the dispatch's). */
  data(bytes: Buffer): void {
    if (this.first) {
      const r = feedFirstFrame(this.first.decoder, bytes, JOIN_FIRST_FRAME);
      if (r) this.settle(r);
      return;
    }
    this.sentData = true;
    this.onData?.();
  }

  /** @internal The connection ended and the addon closed it (the dispatch's). */
  end(code: string | undefined): void {
    this.gone = true;
    if (this.first) this.settle({ code: code ?? 'ECONNRESET', message: CLOSED_EARLY });
    else this.onGone?.();
  }

  watch(onData: () => void, onGone: () => void): () => void {
    this.onData = onData;
    this.onGone = onGone;
    return () => {
      this.onData = this.onGone = undefined;
    };
  }

  refuse(frame: Buffer, lingerMs: number): void {
    if (this.fd >= 0) return refuseSocket(this.socket(), frame, lingerMs); // released for a pump that failed
    if (this.sock) return refuseSocket(this.sock, frame, lingerMs);
    held.delete(this.id);
    b!.connRefuse(this.id, frame, lingerMs);
  }

  /**
   * Takes the fd out of the addon's hands: the caller owns it now (the native pump adopts it).
   * @throws TcpPunchError `ERR_PUMP_SOCKET` once the connection has ended.
   */
  release(): number {
    if (this.fd < 0 && !this.sock) {
      held.delete(this.id);
      this.fd = b!.connRelease(this.id);
    }
    if (this.fd < 0) throw new TcpPunchError('ERR_PUMP_SOCKET', 'the connection has ended');
    return this.fd;
  }

  /** The pump took the released fd: this leg holds nothing any more. */
  adopted(): void {
    this.fd = -1;
    this.gone = true;
  }

  socket(): Socket {
    if (!this.sock) {
      const fd = this.release();
      this.fd = -1;
      this.sock = new Socket({ fd, readable: true, writable: true });
      this.sock.on('error', noop);
    }
    return this.sock;
  }
}

/** A listening socket whose connections the addon holds. */
export interface NativeJoinListener {
  readonly host: string;
  readonly port: number;
  /** The listening socket's fd (for setsockopt; the listener owns it). */
  readonly fd: number;
  /** Stops accepting; connections accepted already live on. */
  close(): void;
}

/**
 * Listens on `local`; each connection's join frame (or why it never came within `handshakeTimeoutMs`) goes to
 * `onFirst` with the leg that holds the connection.
 * @throws TcpPunchError `ERR_NATIVE_UNAVAILABLE` without the acceptor, or the errno's code (`EADDRINUSE`...).
 */
export function listenNativeJoins(
  local: NativeEndpoint,
  handshakeTimeoutMs: number,
  onFirst: (leg: NativeLeg, r: FirstFrameResult) => void,
): NativeJoinListener {
  if (!b) throw new TcpPunchError('ERR_NATIVE_UNAVAILABLE', 'the addon cannot hold connections (missing or older build)');
  if (!hooked) {
    b.acceptOnEvent(onEvent);
    hooked = true;
  }
  let bound: ReturnType<AcceptBinding['acceptListen']>;
  try {
    bound = b.acceptListen(local, BACKLOG);
  } catch (err) {
    throw fromNative(err);
  }
  const deadlines = new Deadlines(handshakeTimeoutMs);
  listeners.set(bound.id, (id, ip, first) => {
    const leg = new NativeLeg(id, unmapAddress(ip));
    leg.readFirst(first, deadlines, (r) => onFirst(leg, r));
  });
  return {
    host: bound.host,
    port: bound.port,
    fd: bound.fd,
    close() {
      listeners.delete(bound.id);
      b.acceptClose(bound.id);
    },
  };
}

/** @internal The addon's counters of held connections (tests look for leaks with it). */
export function heldStats(): HeldStats | undefined {
  return b?.acceptStats();
}
