// Relay joins in the SYN (TCP Fast Open, lib/fast-open.ts) through real NATs. Where the server's kernel takes data
// in SYNs (the lab's default, as docs/DEPLOY.md asks of a relay), a peer's first relay leg fetches a cookie and its
// later legs carry their `relay-join` frame in the SYN; where it does not, the same dials connect through ordinary
// handshakes. The server namespace's own kernel counts which happened (TcpExtTCPFastOpenPassive).
//
// Root only (network namespaces, iptables).
//   npx vitest run test/lab/fast-open.test.ts
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { labSkipNote } from '../helpers/skip-note.js';
import { LibraryPair } from './matrix-driver.js';
import { createLab, labPrerequisites, type Lab } from './topology.js';

const pre = labPrerequisites();
const DIALS = 3;

/** The server kernel's count of connections accepted with data in their SYN. */
async function passiveFastOpens(lab: Lab): Promise<number> {
  const { stdout } = await lab.exec('server', ['cat', '/proc/net/netstat'], { check: true });
  const lines = stdout.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const i = names.indexOf('TCPFastOpenPassive');
  if (i < 0) throw new Error('no TCPFastOpenPassive counter in /proc/net/netstat');
  return Number(values[i]);
}

for (const fastOpen of [true, false]) {
  describe.skipIf(!pre.ok)(`relayed dials, server kernel Fast Open ${fastOpen ? 'on' : 'off'}`, labSkipNote(pre.missing), () => {
    let lab: Lab;
    let pair: LibraryPair;
    beforeAll(async () => {
      lab = await createLab({ a: 'cone', b: 'cone', fastOpen });
      pair = await LibraryPair.start(lab, { natProbe: false });
    }, 60_000);
    afterAll(async () => {
      await pair?.close();
      await lab?.destroy();
    }, 30_000);

    it(fastOpen ? 'carry the later joins in their SYNs, with every byte intact' : 'connect through ordinary handshakes, with every byte intact', async () => {
      const before = await passiveFastOpens(lab);
      for (let i = 0; i < DIALS; i++) {
        const r = await pair.dial('a', { strategy: 'relay', bytes: 64 << 10 });
        expect(r.error).toBeNull();
        expect(r.path).toBe('relay');
        expect(r.ok).toBe(true);
      }
      const joinedInSyn = (await passiveFastOpens(lab)) - before;
      // Each side's first leg fetches its cookie; each later one may carry its join in the SYN.
      if (fastOpen) expect(joinedInSyn).toBeGreaterThanOrEqual(2);
      else expect(joinedInSyn).toBe(0);
    }, 90_000);
  });
}
