/**
 * The TLS example of docs/SECURITY.md: a punched connection wrapped in mutually authenticated TLS, client and
 * server sides taken from the assigned roles.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bindReusable, punch } from '../lib/index.js';
import { secureSocket } from '../lib/tls.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const alice = { key: fixture('alice.key.pem'), cert: fixture('alice.cert.pem') };
const bob = { key: fixture('bob.key.pem'), cert: fixture('bob.cert.pem') };

async function punchedPair() {
  const a = await bindReusable({ address: '127.0.0.1' });
  const b = await bindReusable({ address: '127.0.0.1' });
  const [x, y] = await Promise.all([
    punch({ port: a, remote: { host: '127.0.0.1', port: b.port } }),
    punch({ port: b, remote: { host: '127.0.0.1', port: a.port } }),
  ]);
  a.close();
  b.close();
  return [x, y] as const;
}

describe('TLS over a punched connection', () => {
  it('runs mutually authenticated TLS with roles from the server', async () => {
    const [x, y] = await punchedPair();
    const [tx, ty] = await Promise.all([
      secureSocket(x, { role: 'initiator', peerName: 'bob', ...alice, ca: bob.cert }),
      secureSocket(y, { role: 'responder', peerName: 'alice', ...bob, ca: alice.cert }),
    ]);
    expect(tx.encrypted).toBe(true);
    expect(tx.getProtocol()).toBe('TLSv1.3');
    tx.end('secret hello');
    const [data] = await once(ty, 'data');
    expect(String(data)).toBe('secret hello');
    tx.destroy();
    ty.destroy();
  });

  it('rejects a peer whose certificate is not the expected one', async () => {
    const [x, y] = await punchedPair();
    const results = await Promise.allSettled([
      // The initiator expects bob, but the responder presents alice's identity.
      secureSocket(x, { role: 'initiator', peerName: 'bob', ...alice, ca: [bob.cert, alice.cert] }),
      secureSocket(y, { role: 'responder', peerName: 'alice', ...alice, ca: alice.cert }),
    ]);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { code: 'ERR_TLS_PEER_NAME' } });
    expect(results[1]).toMatchObject({ status: 'rejected' });
    x.destroy();
    y.destroy();
  });
});

it('rejects a certificate no trusted certificate issued', async () => {
  const [x, y] = await punchedPair();
  const results = await Promise.allSettled([
    secureSocket(x, { role: 'initiator', peerName: 'bob', ...alice, ca: bob.cert }),
    // The responder only trusts bob, so alice's certificate must be refused.
    secureSocket(y, { role: 'responder', peerName: 'alice', ...bob, ca: bob.cert }),
  ]);
  expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: 'ERR_TLS_PEER_UNVERIFIED' } });
  x.destroy();
  y.destroy();
});
