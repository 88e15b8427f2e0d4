/**
 * Timing constants both ends of the protocol rely on.
 */

/** Time a peer allows the `direct-auth` exchange on a freshly punched socket. */
export const DIRECT_AUTH_TIMEOUT_MS = 3000;

/** Extra time the server waits for `result` frames beyond a punch's delay, timeout and direct-auth window. */
export const RESULT_GRACE_MS = 2000;

/** A new attempt is only started when at least this much of the dial deadline is left. */
export const MIN_ATTEMPT_MS = 500;
