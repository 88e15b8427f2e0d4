/**
 * What a `tcp-punch` subcommand is. In a module of its own so that the command files and the dispatcher (run.ts)
 * both depend on it rather than on each other.
 */

/** A loaded subcommand. */
export interface Command {
  /** The text `tcp-punch <command> --help` prints. */
  help: string;
  /** Runs the command with its own arguments; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
}

/** A subcommand as the dispatcher lists it: its one-line summary, and how to load it (only when it runs). */
export interface CommandEntry {
  summary: string;
  load(): Promise<Command>;
}
