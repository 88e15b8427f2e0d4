/**
 * The end report of a tunnel: how the bridge ended, with the relay's reason in place of the socket error it
 * caused when the relay ended the session (a limit, a shutdown, the other peer gone).
 */
import type { RelayEndInfo } from '../peer/types.js';
import type { PumpEndReason, PumpResult } from '../relay/pump.js';

/**
 * Longest a finished relayed tunnel waits for the relay's `relay-end` notice. It travels on the control
 * connection, so it can arrive after the data socket's reset; it normally follows within milliseconds.
 */
export const RELAY_END_WAIT_MS = 3000;

const PUMP_REASONS: readonly string[] = ['eof', 'error', 'reset', 'limit-bytes', 'limit-duration', 'limit-idle', 'stopped'];

/**
 * Resolves `result` once the relay's notice (if the tunnel was relayed) is in: a session the relay ended for a
 * reason of its own reports that reason and code, not the reset it caused. Never rejects.
 */
export async function endReport(
  result: PumpResult,
  relayEnd: Promise<RelayEndInfo | undefined> | undefined,
): Promise<{ result: PumpResult; relayEnd?: RelayEndInfo }> {
  if (!relayEnd) return { result };
  const info = await awaitRelayEnd(relayEnd);
  if (!info) return { result };
  if (info.reason === 'eof' || !PUMP_REASONS.includes(info.reason)) return { result, relayEnd: info };
  return { result: { ...result, reason: info.reason as PumpEndReason, error: info.code || info.reason }, relayEnd: info };
}

/** The relay's notice, or undefined if none comes within {@link RELAY_END_WAIT_MS}. Never rejects. */
export async function awaitRelayEnd(relayEnd: Promise<RelayEndInfo | undefined>): Promise<RelayEndInfo | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const info = await Promise.race([
    relayEnd.catch(() => undefined),
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), RELAY_END_WAIT_MS))),
  ]);
  clearTimeout(timer);
  return info;
}
