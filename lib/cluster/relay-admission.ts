/**
 * The relay's per-peer and per-IP limits, cluster-wide: one slot per joined side of a relayed session, in the
 * shared sets of {@link SharedLimits}. The relay asks {@link RelayAdmission.admit} when a side joins (after its own
 * per-node checks) and calls {@link RelayAdmission.release} when that side's session ends, whatever the reason.
 *
 * When Redis cannot answer, the side is admitted (`unknown`): the node's own limits still hold, and a Redis outage
 * must not stop relaying.
 *
 * It fits the relay's admission hook (lib/relay/admission.ts) by shape, so neither layer imports the other;
 * lib/server/cluster-link.ts hands it to the relay.
 */
import type { SharedLimits } from './shared-limits.js';

/** One joining side of a relayed session. */
export interface RelaySide {
  sessionId: string;
  side: 'a' | 'b';
  peerId: string;
  ip: string;
}

/** The limits, as the relay has them (RelayLimits.maxSessionsPerPeer / maxSessionsPerIp). */
export interface RelayAdmissionLimits {
  maxSessionsPerPeer: number;
  maxSessionsPerIp: number;
}

/** Why a side was refused, or `ok` / `unknown` (Redis did not answer: admitted on local limits only). */
export type AdmissionResult = 'ok' | 'unknown' | 'peer' | 'ip';

/** Cluster-wide admission of relay joins. */
export class RelayAdmission {
  constructor(
    private readonly limits: SharedLimits,
    private readonly max: RelayAdmissionLimits,
  ) {}

  /** Takes the side's slots; a refusal holds nothing. Map `peer`/`ip` to the relay's own limit errors. */
  async admit(s: RelaySide): Promise<AdmissionResult> {
    const holder = `${s.sessionId}/${s.side}`;
    const peer = await this.limits.take('relay-peer', s.peerId, holder, this.max.maxSessionsPerPeer);
    if (peer === false) return 'peer';
    const ip = await this.limits.take('relay-ip', s.ip, holder, this.max.maxSessionsPerIp);
    if (ip === false) {
      if (peer) await this.limits.release('relay-peer', s.peerId, holder);
      return 'ip';
    }
    return peer === undefined || ip === undefined ? 'unknown' : 'ok';
  }

  /** Gives the side's slots back (idempotent). */
  async release(s: RelaySide): Promise<void> {
    const holder = `${s.sessionId}/${s.side}`;
    await Promise.all([this.limits.release('relay-peer', s.peerId, holder), this.limits.release('relay-ip', s.ip, holder)]);
  }
}
