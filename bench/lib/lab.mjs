// @ts-check
/** The NAT lab (test/lab/topology.js) for the connect-time benchmark: it needs root and its tools. */
import path from 'node:path';
import { ROOT } from './common.mjs';

export const LAB_TOPOLOGY = path.join(ROOT, 'test', 'lab', 'topology.js');

/** The lab module, or a note saying why this process cannot run it. */
export async function findLab() {
  if (process.getuid?.() !== 0) return { value: null, note: 'the NAT lab needs root (network namespaces)' };
  const mod = await import(new URL(`file://${LAB_TOPOLOGY}`).href);
  const pre = mod.labPrerequisites?.({ delay: true });
  if (pre && !pre.ok) return { value: null, note: `lab prerequisites missing: ${pre.missing.join(', ')}` };
  return { value: mod, from: 'test/lab/topology.js' };
}
