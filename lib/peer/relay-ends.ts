/**
 * What ends a relayed stream, as the peer hears it on its control connection: the relay's notices (`relay-end`)
 * for the sessions this peer takes part in (a dial result's `relayEnd` promise settles with the notice, or with
 * undefined when the control connection goes first: no notice can come any more), and the server's `end` of a
 * relayed dial whose stream was handed over early.
 */
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import type { Msg } from '../protocol/messages.js';
import type { RelayEndInfo } from './types.js';

/** Relayed sessions waiting for their notice, by session id. */
export class RelayEnds {
  private readonly waiting = new Map<string, (info: RelayEndInfo | undefined) => void>();

  /** The promise of session `sessionId`'s notice. */
  of(sessionId: string): Promise<RelayEndInfo | undefined> {
    return new Promise((resolve) => this.waiting.set(sessionId, resolve));
  }

  /** A notice arrived. */
  deliver(info: RelayEndInfo): void {
    this.waiting.get(info.sessionId)?.(info);
    this.waiting.delete(info.sessionId);
  }

  /** The control connection is gone: every session still waiting settles with undefined. */
  settle(): void {
    for (const resolve of this.waiting.values()) resolve(undefined);
    this.waiting.clear();
  }
}

/**
 * Relayed streams handed over before the server's `end` (early joins, protocol v3), by coordination key: an `end`
 * that says the dial failed after all (the other side's join did not succeed) fails the stream with its code at
 * once, rather than leaving it to the relay's join deadline.
 */
export class UnconfirmedStreams {
  private readonly streams = new Map<string, Socket>();

  /** Holds `socket` until the server's `end` for coordination `key`, or until it closes. */
  hold(key: string, socket: Socket): void {
    this.streams.set(key, socket);
    socket.once('close', () => {
      if (this.streams.get(key) === socket) this.streams.delete(key);
    });
  }

  /** The server's `end` for `key`: a failure destroys the stream with the end's code. */
  end(key: string, msg: Msg<'end'>): void {
    const socket = this.streams.get(key);
    if (!socket) return;
    this.streams.delete(key);
    if (msg.outcome !== 'ok') socket.destroy(new TcpPunchError(msg.code || 'ERR_RELAY_FAILED', msg.message));
  }

  /** The control connection is gone: no `end` can come; the relay's own deadlines still apply. */
  clear(): void {
    this.streams.clear();
  }
}
