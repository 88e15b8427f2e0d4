/**
 * Dual-stack on the peer: registers the IP family other than the control connection's with the server
 * (`register-family` on a connection of that family) and builds the {@link AttemptEnv} that punches in that family
 * use.
 *
 * The address matters: an IPv6 stateful firewall keys its state on the exact source address, and the other side
 * targets the address the server observed. So the registration connection leaves from the address the kernel picks
 * for the server, unless that is a temporary (privacy, RFC 8981) address, in which case it leaves from a permanent
 * global address of the same interface; every later punch in the family binds to the address the server observed.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { familyOf, resolveEndpoints } from '../endpoint.js';
import type { Endpoint } from '../endpoint.js';
import { unmapAddress } from '../protocol/fields.js';
import { familyProof, random } from '../protocol/crypto.js';
import { encodeMessage } from '../protocol/messages.js';
import { readMessage } from '../protocol/stream.js';
import type { AttemptEnv } from './attempt.js';
import { dialServer } from './control.js';

/** What {@link registerSecondFamily} needs. */
export interface SecondFamilyOptions {
  /** The same server's address in the other family. */
  server: Endpoint;
  id: string;
  /** The control connection's session key (proves the registration belongs to it). */
  sessionKey: Uint8Array;
  /** The control family's environment, which the new one copies the punch tuning from. */
  base: AttemptEnv;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Registers the second family and resolves the environment of attempts in it (fresh ports on the observed address,
 * observe connections to `server`, no warm port, mapping `independent`: the family is not translated).
 * @throws TcpPunchError `ERR_FAMILY_MISMATCH` (`server` is in the control family), `ERR_SERVER_UNREACHABLE`, or the
 *   server's refusal code (`ERR_INVALID_TOKEN`, `ERR_UNKNOWN_TYPE` from a server without dual-stack).
 */
export async function registerSecondFamily(o: SecondFamilyOptions): Promise<AttemptEnv> {
  const [server] = await resolveEndpoints([o.server]);
  const family = server ? familyOf(server.host) : 0;
  if (!server || !family || family === o.base.family)
    throw new TcpPunchError('ERR_FAMILY_MISMATCH', `${o.server.host} is not an address in the family other than the control connection's`);
  let sock = await dialFrom(server, undefined, o);
  try {
    const chosen = unmapAddress(sock.localAddress);
    const permanent = family === 6 ? permanentFor(chosen) : chosen;
    if (permanent !== chosen) {
      sock.destroy();
      sock = await dialFrom(server, permanent, o);
    }
    const local = unmapAddress(sock.localAddress);
    const nonce = random(16);
    sock.write(
      encodeMessage({
        type: 'register-family', id: o.id, nonce, mac: familyProof(o.sessionKey, nonce, o.id),
        private: [{ host: local, port: sock.localPort ?? 0 }],
      }),
    );
    const reply = await readMessage(sock, { timeoutMs: o.timeoutMs, maxFrameSize: 512, ...(o.signal ? { signal: o.signal } : {}) });
    if (reply.type === 'error') throw new TcpPunchError(reply.code, `Second-family registration refused: ${reply.message}`);
    if (reply.type !== 'observed')
      throw new TcpPunchError('ERR_UNEXPECTED_MESSAGE', `Unexpected ${reply.type} on the register-family connection`);
    // The server observed `local` (nothing translates this family): the address every punch in it binds to.
    return { ...o.base, server, family, localAddress: local, natMapping: () => 'independent', warm: undefined, other: undefined };
  } finally {
    sock.destroy();
  }
}

function dialFrom(server: Endpoint, localAddress: string | undefined, o: SecondFamilyOptions): Promise<Socket> {
  return dialServer({ server, localAddress, timeoutMs: o.timeoutMs, signal: o.signal }).then((sock) => sock.on('error', () => undefined));
}

/** IFA_F_* flags of /proc/net/if_inet6 that rule an address out as a punch source. */
const IFA_F_TEMPORARY = 0x01;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_TENTATIVE = 0x40;

/**
 * `address` itself unless it is a temporary IPv6 address; then a permanent global address of the same interface
 * (or `address` when there is none, or the system does not say: non-Linux).
 */
export function permanentFor(address: string, table: string | undefined = readIfInet6()): string {
  if (!table) return address;
  const rows = parseIfInet6(table);
  const mine = rows.find((r) => r.address === expand(address));
  if (!mine || !(mine.flags & IFA_F_TEMPORARY)) return address;
  const alt = rows.find(
    (r) => r.dev === mine.dev && r.scope === 0 && !(r.flags & (IFA_F_TEMPORARY | IFA_F_DEPRECATED | IFA_F_TENTATIVE)),
  );
  return alt ? alt.text : address;
}

function readIfInet6(): string | undefined {
  try {
    return readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return undefined;
  }
}

interface IfRow {
  address: string;
  text: string;
  dev: string;
  scope: number;
  flags: number;
}

/** Parses /proc/net/if_inet6: `<32 hex> <ifindex> <prefixlen> <scope> <flags> <dev>` per line. */
function parseIfInet6(table: string): IfRow[] {
  const out: IfRow[] = [];
  for (const line of table.split('\n')) {
    const [hex, , , scope, flags, dev] = line.trim().split(/\s+/);
    if (!hex || hex.length !== 32 || !dev) continue;
    const text = hex.match(/.{4}/g)!.map((g) => g.replace(/^0{1,3}/, '')).join(':');
    out.push({ address: hex, text, dev, scope: parseInt(scope!, 16), flags: parseInt(flags!, 16) });
  }
  return out;
}

/** The 32 hex digits of an IPv6 address. */
function expand(address: string): string {
  const [head, tail] = address.toLowerCase().split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('');
}
