import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Network tests share two cores with their own servers: generous limits, never timing assertions.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Files run in separate forks so fd counts and native state of one file never bleed into another.
    pool: 'forks',
    // The NAT lab needs the whole machine; lab files also serialise among themselves.
    fileParallelism: true,
  },
});
