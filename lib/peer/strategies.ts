/**
 * Dial strategies: how `peer.dial()` reaches a peer. `direct` (server-coordinated punch) is built in; more
 * (the relay's `relay`, `direct-first`, `relay-first`) are added through the `strategies` option.
 */
import type { DialContext, DialResult, DialStrategy } from './types.js';

/** Punch only: all attempts the server coordinates, within the dial's deadline. */
export const directStrategy: DialStrategy = {
  dial(ctx: DialContext): Promise<DialResult> {
    return ctx.direct();
  },
};

/** The strategies every Peer knows. */
export const BUILTIN_STRATEGIES: Readonly<Record<string, DialStrategy>> = Object.freeze({ direct: directStrategy });
