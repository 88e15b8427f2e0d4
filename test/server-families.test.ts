/** Which family attempt 1 of a dial runs in (lib/server/families.ts), from what each side registered. */
import { describe, expect, it } from 'vitest';

import { firstFamily } from '../lib/server/families.js';
import type { FamilyPeer } from '../lib/server/families.js';
import type { Observation } from '../lib/server/plan.js';

const v6 = (host: string): Observation => ({ public: { host, port: 1000 }, private: [{ host, port: 1000 }], mapping: 'independent', filtering: 'unknown' });
const v4 = (host: string): Observation => ({ public: { host, port: 1000 }, private: [], mapping: 'unknown', filtering: 'unknown' });
const peer = (controlFamily: 4 | 6, secondFamily?: Observation): FamilyPeer => ({ controlFamily, secondFamily });

describe('firstFamily', () => {
  it('IPv6 first when both sides registered IPv6 next to IPv4 control connections', () => {
    expect(firstFamily(peer(4, v6('2001:db8:1::2')), peer(4, v6('2001:db8:2::2')))).toBe(6);
  });
  it('IPv6 first when one side is on IPv6 already and the other registered it', () => {
    expect(firstFamily(peer(6), peer(4, v6('2001:db8:2::2')))).toBe(6);
  });
  it('the control family when a side has no IPv6, or both control connections are IPv6 already', () => {
    expect(firstFamily(peer(4), peer(4, v6('2001:db8:2::2')))).toBeUndefined();
    expect(firstFamily(peer(4, v6('2001:db8:1::2')), peer(4))).toBeUndefined();
    expect(firstFamily(peer(6), peer(6))).toBeUndefined();
    expect(firstFamily(peer(6, v4('198.51.100.2')), peer(4))).toBeUndefined();
  });
  it('a peer that knows nothing of families (a cluster proxy) keeps the control family', () => {
    expect(firstFamily({}, peer(4, v6('2001:db8:2::2')))).toBeUndefined();
  });
});
