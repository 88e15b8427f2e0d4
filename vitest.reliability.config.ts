// `npm run test:reliability` (through scripts/reliability.mjs): load, leak, abuse and fault tests, with the fuzz
// tests whose counts the reliability document reports.
import { tier } from './test/helpers/vitest-tier.js';

export default tier(['test/reliability/**/*.test.ts', 'test/fuzz/**/*.test.ts']);
