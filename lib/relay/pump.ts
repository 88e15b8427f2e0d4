/**
 * Relay pumps: the native one by default, the pure-JS one where the addon's pump is unavailable.
 *
 * `TCP_PUNCH_PUMP=js` in the environment makes {@link choosePump}('auto') pick the JS pump (benchmarks, debugging).
 */
import { TcpPunchError, invalidArgValue } from '../errors.js';
import { requireNative } from '../native.js';
import { jsPump } from './pump-js.js';
import { nativePump } from './pump-native.js';
import type { Pump } from './pump-types.js';

export { jsPump } from './pump-js.js';
export { nativePump, configureNativePump, type NativePumpConfig } from './pump-native.js';
export type {
  Pump,
  PumpEndReason,
  PumpOptions,
  PumpResult,
  PumpSession,
  PumpStats,
  PumpStopReason,
} from './pump-types.js';

/** Which pump to use: `auto` is native where available. */
export type PumpKind = 'auto' | 'native' | 'js';

/**
 * Returns the pump of that kind.
 * @throws TcpPunchError for `native`: `ERR_NATIVE_UNAVAILABLE` without the addon, `ERR_PUMP_UNAVAILABLE` where
 *   the addon has no pump.
 */
export function choosePump(kind: PumpKind = 'auto'): Pump {
  switch (kind) {
    case 'js':
      return jsPump;
    case 'native':
      requireNative('the native relay pump');
      if (!nativePump) throw new TcpPunchError('ERR_PUMP_UNAVAILABLE', 'the native pump is not available');
      return nativePump;
    case 'auto':
      return process.env.TCP_PUNCH_PUMP === 'js' || !nativePump ? jsPump : nativePump;
    default:
      throw invalidArgValue('kind', "must be 'auto', 'native' or 'js'", kind);
  }
}

/** The pump used when none is named: native where available. */
export const defaultPump: Pump = nativePump ?? jsPump;
