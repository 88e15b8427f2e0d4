/**
 * Dial strategies: how `peer.dial()` reaches a peer.
 *
 * - `direct-first` (the default): punch within part of the deadline, then fall back to the relay.
 * - `relay-first`: connect through the relay at once, punch in the background, and move the same byte stream to
 *   the direct connection when it is up (an {@link UpgradableStream}: no byte lost, duplicated or reordered).
 * - `direct`: punch only. `relay`: relay only.
 * More can be added through `PeerOptions.strategies`.
 */
import type { Socket } from 'node:net';
import { TcpPunchError } from '../errors.js';
import { UpgradableStream } from '../upgrade.js';
import type { DialContext, DialResult, DialStrategy } from './types.js';

/** Share of the deadline `direct-first` gives to punching, and the most it gives it. */
const DIRECT_SHARE = 0.6;
const DIRECT_MAX_MS = 10_000;
/** How long a relay-first stream keeps trying to move to a direct connection. */
export const UPGRADE_TIMEOUT_MS = 30_000;

/** Errors after which trying the relay is pointless: the peer is not there, refused, or we were stopped. */
const FINAL = new Set([
  'ABORT_ERR',
  'ERR_PEER_OFFLINE',
  'ERR_PEER_REFUSED',
  'ERR_PEER_CLOSED',
  'ERR_INVALID_TARGET',
  'ERR_SERVER_CLOSING',
  'ERR_SERVER_DISCONNECTED',
  'ERR_TOO_MANY_PENDING',
]);

/** Punch only: all attempts the server coordinates, within the dial's deadline. */
export const directStrategy: DialStrategy = {
  dial: (ctx) => ctx.direct(),
};

/** Relay only. */
export const relayStrategy: DialStrategy = {
  dial: async (ctx) => {
    const { coordId: _coordId, ...result } = await ctx.relay();
    return result;
  },
};

/** Punch first; the relay when punching fails (and would not fail the same way). */
export const directFirstStrategy: DialStrategy = {
  async dial(ctx: DialContext): Promise<DialResult> {
    const budget = Math.max(1, Math.min(DIRECT_MAX_MS, Math.floor(ctx.timeoutMs * DIRECT_SHARE)));
    try {
      return await ctx.direct({ timeoutMs: budget });
    } catch (err) {
      const code = (err as TcpPunchError).code;
      if (FINAL.has(code) || ctx.signal.aborted) throw err;
      try {
        return await relayStrategy.dial(ctx);
      } catch (relayErr) {
        // Both paths failed: report the relay's error, keep the punch's for diagnosis.
        throw Object.assign(relayErr as Error, { directError: err });
      }
    }
  },
};

/** The relay at once, then a background punch that moves the stream to a direct connection. */
export const relayFirstStrategy: DialStrategy = {
  async dial(ctx: DialContext): Promise<DialResult> {
    const { coordId, ...relayed } = await ctx.relay({ upgradable: true });
    const stream = new UpgradableStream(relayed.socket as Socket);
    const ac = new AbortController();
    stream.once('close', () => ac.abort());
    ctx.direct({ link: coordId, timeoutMs: UPGRADE_TIMEOUT_MS, signal: ac.signal }).then(
      (direct) => {
        if (stream.destroyed) return void direct.socket.destroy();
        stream.upgrade(direct.socket as Socket).then(
          () => ctx.peer.emit('upgrade', { peerId: ctx.peerId, coordId, role: relayed.role }),
          () => undefined,
        );
      },
      () => undefined, // no direct path: the stream stays on the relay
    );
    return { ...relayed, socket: stream };
  },
};

/** The strategies every Peer knows. */
export const BUILTIN_STRATEGIES: Readonly<Record<string, DialStrategy>> = Object.freeze({
  'direct-first': directFirstStrategy,
  'relay-first': relayFirstStrategy,
  direct: directStrategy,
  relay: relayStrategy,
});

/** The strategy `dial()` uses when none is named. */
export const DEFAULT_STRATEGY = 'direct-first';
