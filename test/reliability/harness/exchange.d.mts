import type { Duplex } from 'node:stream';

/** Outcome of one side of the hash-checked exchange (see exchange.mjs). */
export interface ExchangeResult {
  ok: boolean;
  /** Payload bytes written. */
  sent: number;
  /** Payload bytes received and verified (on failure: received so far). */
  received: number;
  /** The payload size the far side announced in its header (-1 if none arrived). */
  expected: number;
  reason?: string;
  code?: string;
}

export function exchange(stream: Duplex, bytes: number, options?: { timeoutMs?: number; destroyOnDone?: boolean; spreadMs?: number }): Promise<ExchangeResult>;
