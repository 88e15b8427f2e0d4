// Helper for lab.test.ts: builds a lab in a separate process, reports its namespaces, then leaves
// without destroy() in the way given by argv[2] ('exit' | 'throw' | 'wait' for a signal), so the test
// can check that the process-level handlers still tear the lab down.
import { createLab } from './topology.js';

const how = process.argv[2] ?? 'exit';
const lab = await createLab({ a: 'cone', b: { nat: 'cone', delayMs: 10 } });
process.stdout.write(JSON.stringify({ id: lab.id, ns: Object.values(lab.ns) }) + '\n');
if (how === 'exit') process.exit(0);
if (how === 'throw') setTimeout(() => {
  throw new Error('lab-child: deliberate uncaught exception');
}, 10);
if (how === 'wait') setTimeout(() => process.exit(3), 20_000); // bounded: the test signals long before
