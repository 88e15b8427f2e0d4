/**
 * The relay's end notices (`relay-end`, on the control connection) for the relayed sessions this peer takes part
 * in: a dial result's `relayEnd` promise settles with the notice, or with undefined when the control connection
 * goes first (no notice can come any more).
 */
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
