/**
 * What the server learns about one side's port: the observation an attempt is planned on (lib/server/plan.ts),
 * and what a cluster node publishes of a peer's warm port (lib/cluster/cards.ts).
 */
import type { Endpoint } from '../endpoint.js';
import type { NAT_FILTERINGS, NAT_MAPPINGS } from './messages.js';

/** What the server learnt about one side in an attempt. */
export interface Observation {
  /** The observe connection's source address as the server saw it (the NAT mapping). */
  public: Endpoint;
  /** The addresses the side reported for its port (its own view). */
  private: Endpoint[];
  /** The side's NAT mapping as it measured it (`unknown` unless it probed). */
  mapping: (typeof NAT_MAPPINGS)[number];
  /** The side's inbound filtering as it measured it (`unknown` unless it probed). */
  filtering: (typeof NAT_FILTERINGS)[number];
}
