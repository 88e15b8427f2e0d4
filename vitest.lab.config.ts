// `npm run test:lab`: the NAT lab (root, ip netns, iptables/nftables, iperf3: scripts/install-system-deps.sh).
import { tier } from './test/helpers/vitest-tier.js';

export default tier(['test/lab/**/*.test.ts']);
