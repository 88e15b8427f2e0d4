// `npm run test:package`: the packed tarball installed where nothing can be compiled (needs both prebuilds).
import { tier } from './test/helpers/vitest-tier.js';

export default tier(['test/package/**/*.test.ts']);
