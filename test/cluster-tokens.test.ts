/**
 * Relay tokens in a cluster: any node can issue a token for any node's relay, only that relay accepts it, and it
 * verifies there with no round trip (the relay-token secret is derived from the cluster secret per relay node).
 */
import { describe, expect, it } from 'vitest';

import { deriveClusterKeys, relayTokenSecret } from '../lib/cluster/crypto.js';
import { RelayTokens } from '../lib/relay/tokens.js';

describe('cluster relay tokens', () => {
  const keys = deriveClusterKeys('cluster-token-secret-0123456789');
  const relayOf = (node: string): RelayTokens => new RelayTokens({ secret: relayTokenSecret(keys, node) });

  it('a token issued on one node for another node\'s relay verifies there and nowhere else', () => {
    const issuedOnN2 = relayOf('n1').issue({ a: 'alice', b: 'bob', sessionId: 'coord-1' });
    expect(relayOf('n1').verify(issuedOnN2.a)).toMatchObject({ sid: 'coord-1', peer: 'alice', other: 'bob' });
    expect(() => relayOf('n3').verify(issuedOnN2.a)).toThrow(expect.objectContaining({ code: 'ERR_RELAY_TOKEN_INVALID' }));
    const foreign = new RelayTokens({ secret: relayTokenSecret(deriveClusterKeys('another-secret-0123456789'), 'n1') });
    expect(() => foreign.verify(issuedOnN2.b)).toThrow(expect.objectContaining({ code: 'ERR_RELAY_TOKEN_INVALID' }));
  });

  it('derives distinct secrets per node and per cluster', () => {
    expect(relayTokenSecret(keys, 'n1').equals(relayTokenSecret(keys, 'n2'))).toBe(false);
    expect(relayTokenSecret(keys, 'n1').equals(relayTokenSecret(keys, 'n1'))).toBe(true);
    expect(relayTokenSecret(keys, 'n1')).toHaveLength(32);
    expect(() => deriveClusterKeys('short')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });
});
