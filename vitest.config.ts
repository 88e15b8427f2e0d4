// `npm test`: unit, loopback end-to-end and fuzz tests; needs Node and the addon, no root, no system tools.
// A tier's directory named on the command line (`npx vitest run test/lab/lab.test.ts`) is not excluded, so single
// files of any tier still run with plain `npx vitest run <file>`.
import { OWN_TIER_DIRS, tier } from './test/helpers/vitest-tier.js';

const named = (dir: string): boolean => process.argv.some((a) => a.replace(/^\.\//, '').startsWith(dir));

export default tier(['test/**/*.test.ts'], OWN_TIER_DIRS.filter((d) => !named(d)).map((d) => `${d}/**`));
