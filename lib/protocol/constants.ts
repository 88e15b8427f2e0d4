/**
 * Timing constants both ends of the protocol rely on.
 */

/** Time a peer allows the `direct-auth` exchange on a freshly punched socket. */
export const DIRECT_AUTH_TIMEOUT_MS = 3000;

/** Extra time the server waits for `result` frames beyond a punch's delay, timeout and direct-auth window. */
export const RESULT_GRACE_MS = 2000;

/** A new attempt is only started when at least this much of the dial deadline is left. */
export const MIN_ATTEMPT_MS = 500;

/**
 * How long a report (a dial's settled outcome, the release of a punched socket) may wait on a control connection to
 * share a segment with the next ones: the server reads one segment for what would have been several.
 */
export const REPORT_COALESCE_MS = 5;
