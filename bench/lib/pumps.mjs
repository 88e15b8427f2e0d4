// @ts-check
/**
 * Pumps the benchmark relay can use, behind one small interface: two connected sockets in, bytes moved both ways
 * until both directions end, then both sockets closed.
 *
 * - `pipe`: Node streams, `a.pipe(b); b.pipe(a)` (what a user writes by hand; a baseline, not tcp-punch code).
 * - `js`: tcp-punch's pure-JS pump (`jsPump` of dist/relay/pump.js).
 * - `native`: tcp-punch's native splice pump (`nativePump` of dist/relay/pump.js); `native-copy` the same with
 *   splice off (its read/write path).
 *
 * Where the addon has no native pump, the native kinds come back unavailable with a note.
 */
import { importDist } from './common.mjs';

/**
 * @typedef {object} PumpSession
 * @property {Promise<void>} done settles when both directions have ended and both sockets are closed
 */

/**
 * @typedef {object} Pump
 * @property {string} kind
 * @property {string} label
 * @property {boolean} available
 * @property {string} [note] why it is unavailable, or a remark on how it runs
 * @property {(a: import('node:net').Socket, b: import('node:net').Socket) => PumpSession} start
 * @property {() => Record<string, unknown> | null} [stats] pump-wide counters, if the implementation has them
 */

/** @type {Record<string, string>} */
export const PUMP_LABELS = {
  native: 'tcp-punch relay, native pump',
  'native-copy': 'tcp-punch relay, native pump, no splice',
  js: 'tcp-punch relay, JS pump',
  pipe: 'Node relay, stream pipe()',
};

/**
 * Loads a pump by kind. `native-copy` is the native pump with splice turned off (read/write through its buffers).
 * @param {'native' | 'native-copy' | 'js' | 'pipe'} kind
 * @param {Record<string, number>} [config] configureNativePump() options (pipe pool sizes) for the native kinds
 * @returns {Promise<Pump>}
 */
export async function loadPump(kind, config) {
  const label = PUMP_LABELS[kind] ?? kind;
  if (kind === 'pipe') return { kind, label, available: true, start: pipePump };
  const mod = await importDist('relay/pump.js');
  /** @type {any} */
  const pump = kind === 'js' ? mod.jsPump : mod.nativePump;
  if (!pump) return unavailable(kind, label, 'the loaded addon has no pump');
  if (kind !== 'js' && config) mod.configureNativePump(config);
  /** @type {Record<string, unknown>} */
  const startOptions = kind === 'native-copy' ? { splice: false } : {};
  return {
    kind,
    label,
    available: true,
    start(a, b) {
      const session = pump.start(a, b, startOptions);
      // The relay hands sockets over paused (nothing may be read into JS before the native pump dups the fds);
      // the JS pump reads with 'data' listeners, which do not restart a socket that was paused explicitly.
      if (kind === 'js') {
        if (!a.destroyed) a.resume();
        if (!b.destroyed) b.resume();
      }
      return { done: session.done.then(() => undefined) };
    },
    stats: () => pump.stats(),
  };
}

/**
 * @param {string} kind @param {string} label @param {string} note @returns {Pump}
 */
function unavailable(kind, label, note) {
  return {
    kind,
    label,
    available: false,
    note,
    start() {
      throw new Error(`${label}: ${note}`);
    },
  };
}

/**
 * The stream-pipe baseline.
 * @param {import('node:net').Socket} a @param {import('node:net').Socket} b @returns {PumpSession}
 */
function pipePump(a, b) {
  a.pipe(b);
  b.pipe(a);
  const closed = (/** @type {import('node:net').Socket} */ s) =>
    new Promise((resolve) => {
      if (s.destroyed) resolve(undefined);
      else s.once('close', resolve);
    });
  const onError = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', onError);
  b.on('error', onError);
  a.resume();
  b.resume();
  return { done: Promise.all([closed(a), closed(b)]).then(() => undefined) };
}
