import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { planAttempt, punchHopeless, reachable } from '../lib/server/plan.js';
import type { Observation } from '../lib/server/plan.js';

const ep = (host: string, port: number) => ({ host, port });
const natted = (
  pub: string,
  port: number,
  lan: string,
  mapping: Observation['mapping'] = 'unknown',
  filtering: Observation['filtering'] = 'unknown',
): Observation => ({
  public: ep(pub, port),
  private: [ep(lan, 40000)],
  mapping,
  filtering,
});

describe('attempt planning', () => {
  it('punches public mappings between different NATs, synchronised', () => {
    const a = natted('198.51.100.1', 5001, '192.168.1.2');
    const b = natted('203.0.113.9', 6001, '10.0.0.7');
    for (const n of [1, 2, 3]) {
      expect(planAttempt(a, b, n, 3, true)).toEqual({ mode: 'sync', route: 'public', remotes: [b.public, a.public] });
    }
  });

  it('uses LAN addresses behind one NAT, then hairpins on the last attempt', () => {
    const a = natted('198.51.100.1', 5001, '192.168.1.2');
    const b = natted('198.51.100.1', 5002, '192.168.1.3');
    expect(planAttempt(a, b, 1, 3, true)).toMatchObject({ route: 'private', remotes: [b.private[0], a.private[0]] });
    expect(planAttempt(a, b, 2, 3, true)).toMatchObject({ route: 'private' });
    expect(planAttempt(a, b, 3, 3, true)).toMatchObject({ route: 'hairpin', remotes: [b.public, a.public] });
    expect(planAttempt(a, b, 1, 1, true)).toMatchObject({ route: 'private' });
  });

  it('tries connection reversal first when one side is reachable, and only then', () => {
    const open: Observation = { public: ep('203.0.113.5', 7000), private: [ep('203.0.113.5', 7000)], mapping: 'independent', filtering: 'open' };
    const b = natted('198.51.100.1', 5001, '192.168.1.2');
    expect(reachable(open)).toBe(true);
    expect(reachable(b)).toBe(false);
    expect(planAttempt(open, b, 1, 3, true)).toMatchObject({ mode: 'reverse', route: 'public' });
    expect(planAttempt(b, open, 1, 3, true)).toMatchObject({ mode: 'reverse' });
    expect(planAttempt(open, b, 2, 3, true)).toMatchObject({ mode: 'sync' });
    expect(planAttempt(open, b, 1, 3, false)).toMatchObject({ mode: 'sync' });
  });

  it('calls punching hopeless only for a symmetric side against a side that is not directly reachable', () => {
    const sym = natted('198.51.100.1', 5001, '192.168.1.2', 'dependent');
    const cone = natted('203.0.113.9', 6001, '10.0.0.7', 'independent');
    const unknown = natted('203.0.113.9', 6001, '10.0.0.7');
    const open: Observation = { public: ep('203.0.113.5', 7000), private: [ep('203.0.113.5', 7000)], mapping: 'independent', filtering: 'open' };
    expect(punchHopeless(sym, cone)).toMatch(/initiator's NAT maps per destination/);
    expect(punchHopeless(cone, sym)).toMatch(/responder's NAT maps per destination/);
    expect(punchHopeless(sym, unknown)).toBeDefined();
    expect(punchHopeless(sym, { ...sym, public: ep('203.0.113.7', 1) })).toBeDefined();
    // reachable other side: connection reversal may still work
    expect(punchHopeless(sym, open)).toBeUndefined();
    expect(punchHopeless(open, sym)).toBeUndefined();
    // behind one NAT: the LAN route does not go through the mapping
    expect(punchHopeless(sym, natted('198.51.100.1', 5002, '192.168.1.3', 'dependent'))).toBeUndefined();
    // a side whose NAT lets any port of the peer's host in (full cone, DMZ), as its probe measured: the symmetric
    // side's SYN from an unpredicted port gets through, so punch; port-dependent or unmeasured filtering does not
    const fullCone = natted('203.0.113.9', 6001, '10.0.0.7', 'independent', 'open');
    expect(punchHopeless(sym, fullCone)).toBeUndefined();
    expect(punchHopeless(fullCone, sym)).toBeUndefined();
    expect(punchHopeless(sym, natted('203.0.113.9', 6001, '10.0.0.7', 'independent', 'port-dependent'))).toMatch(/neither side's NAT lets a SYN in/);
    expect(punchHopeless(natted('203.0.113.9', 6001, '10.0.0.7', 'unknown', 'port-dependent'), sym)).toMatch(/neither side's NAT lets a SYN in/);
    // directly reachable but behind a firewall that filters by port (as probed): no better than a port-restricted cone
    const firewalled: Observation = { ...open, filtering: 'port-dependent' };
    expect(punchHopeless(sym, firewalled)).toBeDefined();
    expect(punchHopeless(sym, { ...open, filtering: 'unknown' })).toBeUndefined();
    // a symmetric side with open filtering still takes the other symmetric side's SYN at its warm mapping
    expect(punchHopeless(sym, natted('203.0.113.9', 6001, '10.0.0.7', 'dependent', 'open'))).toBeUndefined();
    // nothing measured, or nothing symmetric: punch as usual
    expect(punchHopeless(cone, unknown)).toBeUndefined();
    expect(punchHopeless(natted('198.51.100.1', 1, '10.0.0.1'), unknown)).toBeUndefined();
  });

  it('refuses to mix IP versions', () => {
    expect(planAttempt(natted('198.51.100.1', 1, '10.0.0.1'), natted('2001:db8::1', 2, 'fe80::1'), 1, 3, true)).toBeUndefined();
  });

  it('always targets the other side', () => {
    const obs = fc.record({
      public: fc.record({ host: fc.constantFrom('198.51.100.1', '198.51.100.2'), port: fc.integer({ min: 1, max: 65535 }) }),
      private: fc.array(fc.record({ host: fc.constantFrom('10.0.0.1', '10.0.0.2', '198.51.100.1'), port: fc.integer({ min: 1, max: 65535 }) }), { maxLength: 3 }),
      mapping: fc.constantFrom('unknown' as const, 'independent' as const, 'dependent' as const),
      filtering: fc.constantFrom('unknown' as const, 'open' as const, 'port-dependent' as const),
    });
    fc.assert(
      fc.property(obs, obs, fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.boolean(), (a, b, n, max, rev) => {
        const plan = planAttempt(a, b, n, max, rev)!;
        expect([b.public, ...b.private]).toContainEqual(plan.remotes[0]);
        expect([a.public, ...a.private]).toContainEqual(plan.remotes[1]);
      }),
    );
  });
});
