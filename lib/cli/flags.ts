/**
 * A command's flags declared once: the same table gives node:util parseArgs its options, prints the `--help`
 * text, and tells the config file which keys it may hold (see config.ts).
 */
import type { ParseArgsConfig } from 'node:util';

type ParseOption = NonNullable<ParseArgsConfig['options']>[string];

/** One flag: parseArgs' option, plus what the help says about it. */
export interface Flag extends ParseOption {
  /** The value's placeholder in the help, e.g. `HOST:PORT`. */
  arg?: string;
  /** What the flag does, defaults included (several lines allowed); a flag without one is not listed. */
  help?: string;
  /** Only on the command line: not a key of the config file (`--help`, `--config`). */
  cliOnly?: boolean;
  /** Its value is a file path: a relative one in the config file is taken relative to that file's folder. */
  path?: boolean;
  /** Another flag this one replaces: given on the command line, it drops that one's value from the config file. */
  replaces?: string;
}

export type Flags = Record<string, Flag>;

/** A titled group of flags in a command's help. */
export interface FlagSection {
  title?: string;
  flags: Flags;
}

const MAX_LEFT = 32;

/** The help lines of `sections`, aligned in two columns. */
export function renderFlags(sections: FlagSection[]): string {
  const rows: { left: string; help: string }[][] = sections.map((s) =>
    Object.entries(s.flags)
      .filter(([, f]) => f.help !== undefined)
      .map(([name, f]) => ({ left: `${f.short ? `-${f.short}, ` : '    '}--${name}${f.arg ? ` ${f.arg}` : ''}`, help: f.help! })),
  );
  const width = Math.min(MAX_LEFT, Math.max(...rows.flat().map((r) => r.left.length))) + 2;
  const out: string[] = [];
  sections.forEach((s, i) => {
    if (s.title) out.push(` ${s.title}:`);
    for (const { left, help } of rows[i]!) {
      const [first, ...more] = help.split('\n');
      if (left.length + 2 > width) out.push(`  ${left}`, `  ${' '.repeat(width)}${first}`);
      else out.push(`  ${left.padEnd(width)}${first}`);
      for (const line of more) out.push(`  ${' '.repeat(width)}${line}`);
    }
  });
  return out.join('\n');
}

/** All flags of `sections` in one table. */
export function allFlags(sections: FlagSection[]): Flags {
  return Object.assign({}, ...sections.map((s) => s.flags)) as Flags;
}
