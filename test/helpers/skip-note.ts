/**
 * Why a conditionally skipped group is skipped and which command runs it: given to `describe.skipIf(...)` as its
 * options, read back by the skip reporter (test/helpers/skip-reporter.ts), which prints it on the last line.
 */
declare module 'vitest' {
  interface TaskMeta {
    skipNote?: SkipNote;
  }
}

export interface SkipNote {
  /** What is missing, e.g. "needs root, iperf3". */
  why: string;
  /** The command that runs the group where it can run. */
  run: string;
}

/** Options for `describe.skipIf(cond)(name, skipNote(why, run), fn)`. */
export function skipNote(why: string, run: string): { meta: { skipNote: SkipNote } } {
  return { meta: { skipNote: { why, run } } };
}

/** The note of a NAT lab group whose prerequisites (`labPrerequisites()` of test/lab/topology.js) are missing. */
export function labSkipNote(missing: string[]): { meta: { skipNote: SkipNote } } {
  return skipNote(`NAT lab needs ${missing.join(', ')}`, 'sudo scripts/install-system-deps.sh && sudo npm run test:lab');
}
