/**
 * The vitest configuration of one test tier (vitest.config.ts: `npm test`; vitest.lab.config.ts: `npm run test:lab`;
 * vitest.reliability.config.ts: `npm run test:reliability`; vitest.package.config.ts: `npm run test:package`). The
 * tiers differ only in which files they run.
 */
import { configDefaults, defineConfig } from 'vitest/config';

/** Directories of test files that only their own tier runs. */
export const OWN_TIER_DIRS = ['test/lab', 'test/reliability', 'test/package'];

export function tier(include: string[], exclude: string[] = []): ReturnType<typeof defineConfig> {
  return defineConfig({
    test: {
      include,
      exclude: [...configDefaults.exclude, ...exclude],
      globalSetup: ['test/global-setup.ts'],
      // Network tests share two cores with their own servers: generous limits, never timing assertions.
      testTimeout: 60_000,
      hookTimeout: 120_000,
      // Files run in parallel, each in a fork of its own, so fd counts and native state of one file never bleed
      // into another (the NAT lab's namespaces belong to the process that made them, so lab files may overlap).
      pool: 'forks',
      fileParallelism: true,
      // The last line of the output names what was skipped, why, and the command that runs it.
      reporters: ['default', './test/helpers/skip-reporter.ts'],
    },
  });
}
