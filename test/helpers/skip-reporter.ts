/**
 * A vitest reporter that ends the output with one line saying what the run skipped, why and the command that runs
 * it (from the groups' {@link skipNote}), so a skip is never only a dim mark mid-run. Nothing is printed when nothing
 * was skipped. `TCP_PUNCH_SKIP_SUMMARY=<file>` also writes that line to the file, for a wrapper script that prints
 * more after vitest (scripts/reliability.mjs) and must still end with it.
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';

import type { Reporter, TestCase, TestModule, Vitest } from 'vitest/node';

import type { SkipNote } from './skip-note.js';

export default class SkipReporter implements Reporter {
  #namePattern: RegExp | undefined;

  onInit(vitest: Vitest): void {
    this.#namePattern = vitest.config.testNamePattern;
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const line = skipLine(modules, this.#namePattern);
    if (process.env.TCP_PUNCH_SKIP_SUMMARY) writeFileSync(process.env.TCP_PUNCH_SKIP_SUMMARY, line ? `${line}\n` : '');
    if (line) process.stdout.write(`\n${line}\n`);
  }
}

/** The summary line, or '' when nothing was skipped; tests that a `-t` pattern left out do not count. */
export function skipLine(modules: ReadonlyArray<TestModule>, namePattern?: RegExp): string {
  // Grouped by the command that runs them: "<count> tests in <files> (<reasons>): run <command>".
  const groups = new Map<string, { whys: Set<string>; files: Set<string>; tests: number }>();
  for (const m of modules) {
    for (const t of m.children.allTests()) {
      if (t.result().state !== 'skipped' || (namePattern && !namePattern.test(spacedName(t)))) continue;
      const note = noteOf(t);
      const key = note?.run ?? '';
      const g = groups.get(key) ?? { whys: new Set<string>(), files: new Set<string>(), tests: 0 };
      if (note) g.whys.add(note.why);
      g.files.add(basename(m.moduleId));
      g.tests++;
      groups.set(key, g);
    }
  }
  if (groups.size === 0) return '';
  const parts = [...groups].map(([run, { whys, files, tests }]) => {
    const what = `${tests} test${tests === 1 ? '' : 's'} in ${[...files].join(', ')}`;
    return run ? `${what} (${[...whys].join('; ')}): run \`${run}\`` : `${what} (marked skip in the test file, no reason given)`;
  });
  return `SKIPPED ${parts.join('; ')}`;
}

function noteOf(t: TestCase): SkipNote | undefined {
  if (t.meta().skipNote) return t.meta().skipNote;
  for (let p = t.parent; p.type === 'suite'; p = p.parent) if (p.meta().skipNote) return p.meta().skipNote;
  return undefined;
}

/** The name `-t` patterns are matched against: the suites' and the test's names joined by spaces. */
function spacedName(t: TestCase): string {
  const names = [t.name];
  for (let p = t.parent; p.type === 'suite'; p = p.parent) names.unshift(p.name);
  return names.join(' ');
}
