/**
 * This peer's NAT as it reports it to the server: measured in the background after each (re)connect (maybe on
 * another network) against the probe ports the server announced, or those of `options.natProbe`, and summarized as
 * the mapping and filtering the server's planner understands. Sent as `report` on the connection it was measured
 * for; until a probe has finished, both are `unknown`.
 */
import type { Endpoint } from '../endpoint.js';
import type { Message } from '../protocol/messages.js';
import { checkNat, type NatCheckResult } from '../nat-check/check.js';
import type { ResolvedPeerOptions } from './options.js';
import type { NatFiltering, NatMapping } from './types.js';

/** Deadline of each NAT probe connection. */
const NAT_PROBE_TIMEOUT_MS = 3000;

/** The control connection a probe measures for, as the probe needs it. */
export interface ProbedConnection {
  readonly server: Endpoint;
  readonly probePorts: [number, number] | undefined;
  send(msg: Message): boolean;
}

/** The last probe's result and the report made of it. */
export class NatReport {
  private result: NatCheckResult | undefined;
  private ac: AbortController | undefined;

  constructor(
    private readonly probe: ResolvedPeerOptions['natProbe'],
    private readonly localAddress: string | undefined,
    /** A probe finished: its result, or why it failed. */
    private readonly done: (result: NatCheckResult | undefined, err: Error | undefined) => void,
  ) {}

  /** What the last probe measured; undefined until one has finished. */
  get last(): NatCheckResult | undefined {
    return this.result;
  }

  /** The NAT mapping as reported to the server with each attempt. */
  get mapping(): NatMapping {
    const r = this.result;
    if (!r) return 'unknown';
    if (r.nat === 'none' || r.mapping === 'endpoint-independent') return 'independent';
    return r.mapping === 'endpoint-dependent' ? 'dependent' : 'unknown';
  }

  /** The inbound filtering as reported to the server with the mapping. */
  get filtering(): NatFiltering {
    const f = this.result?.filtering;
    return f === 'open' || f === 'port-dependent' ? f : 'unknown';
  }

  /** Measures for a new connection (a probe still running for an earlier one is abandoned). */
  start(conn: ProbedConnection): void {
    const probe = this.probe;
    if (probe === false) return;
    const ports = probe?.ports ?? conn.probePorts;
    if (!ports) return;
    this.stop();
    const ac = (this.ac = new AbortController());
    checkNat({
      host: probe?.host ?? conn.server.host,
      probePorts: ports,
      rounds: 2,
      timeoutMs: NAT_PROBE_TIMEOUT_MS,
      localAddress: this.localAddress,
      signal: ac.signal,
    }).then(
      (result) => {
        if (ac.signal.aborted) return;
        this.result = result;
        conn.send({ type: 'report', mapping: this.mapping, filtering: this.filtering });
        this.done(result, undefined);
      },
      (err: Error) => {
        if (!ac.signal.aborted) this.done(undefined, err);
      },
    );
  }

  /** Abandons a probe in flight (its result is dropped). */
  stop(): void {
    this.ac?.abort();
  }
}
