// @ts-check
/**
 * Finds the parts of the built package that other helpers are still writing (rendezvous server, Peer, relay,
 * protocol, NAT lab) so that each benchmark can run what exists and say "not available yet" for the rest.
 * Every lookup tries the public entry point first, then the module's own file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, importDist } from './common.mjs';

/**
 * @param {string[]} files dist-relative candidates, in order
 * @param {string} name export wanted
 */
async function findExport(files, name) {
  for (const f of files) {
    let mod;
    try {
      mod = await importDist(f);
    } catch (e) {
      return { value: null, note: `dist/${f} failed to load: ${/** @type {Error} */ (e).message}` };
    }
    if (mod && mod[name] !== undefined) return { value: mod[name], from: `dist/${f}` };
  }
  return { value: null, note: `not available yet (no ${name} in dist/${files[0]} or dist/${files[1]})` };
}

/** `startServer` of the rendezvous server. */
export const findStartServer = () => findExport(['index.js', 'server/index.js', 'server.js'], 'startServer');
/** The `Peer` class. */
export const findPeer = () => findExport(['index.js', 'peer/index.js', 'peer.js'], 'Peer');
/**
 * A whole module of the built package, or a note saying why not.
 * @param {string} rel dist-relative path
 */
async function findModule(rel) {
  try {
    const mod = await importDist(rel);
    return mod ? { value: mod, from: `dist/${rel}` } : { value: null, note: `not available yet (dist/${rel} is not built)` };
  } catch (e) {
    return { value: null, note: `dist/${rel} failed to load: ${/** @type {Error} */ (e).message}` };
  }
}

/** The protocol module (frame codec, messages, crypto). */
export const findProtocol = () => findModule('protocol/index.js');

export const LAB_TOPOLOGY = path.join(ROOT, 'test', 'lab', 'topology.js');

/** The NAT lab's createLab(), when test/lab/topology.js exists and this process is root. */
export async function findLab() {
  if (!fs.existsSync(LAB_TOPOLOGY)) return { value: null, note: 'not available yet (test/lab/topology.js is missing)' };
  if (process.getuid?.() !== 0) return { value: null, note: 'the NAT lab needs root (network namespaces)' };
  try {
    const mod = await import(new URL(`file://${LAB_TOPOLOGY}`).href);
    const pre = mod.labPrerequisites?.({ delay: true });
    if (pre && !pre.ok) return { value: null, note: `lab prerequisites missing: ${pre.missing.join(', ')}` };
    return { value: mod, from: 'test/lab/topology.js' };
  } catch (e) {
    return { value: null, note: `test/lab/topology.js failed to load: ${/** @type {Error} */ (e).message}` };
  }
}
