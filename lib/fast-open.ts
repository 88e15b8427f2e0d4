/**
 * TCP Fast Open (RFC 7413) for relay legs: a peer's `relay-join` frame rides in its SYN, so the relay reads the
 * join half a round trip after the peer starts instead of one and a half, and a relayed dial resolves one round
 * trip sooner. It needs both ends:
 *
 * - the relay's listener accepts data in SYNs ({@link enableFastOpen}) where the kernel's server side is on
 *   (Linux: bit 2 of `net.ipv4.tcp_fastopen`, off by default; {@link fastOpenServerState} reads it);
 * - the peer connects with {@link fastOpenSocket}. The first connection to a relay fetches a cookie in an ordinary
 *   handshake; later ones carry their first write in the SYN.
 *
 * Either end without it, or a path that drops SYNs with data (the kernel then retransmits the data after an
 * ordinary handshake), only costs the round trip back. A SYN's data may be delivered twice by the network (RFC 7413
 * §6.2): a relay join is safe, as its token is single-use.
 * @internal
 */
import { readFileSync } from 'node:fs';
import { type Server, Socket, isIP } from 'node:net';

import type { Endpoint } from './endpoint.js';
import { handleFd, native } from './native.js';

/** Connections a listener may hold that sent data in their SYN and are not accepted yet (the kernel's TFO queue). */
export const FAST_OPEN_QUEUE = 1024;

interface FastOpenBinding {
  socketClose(fd: number): void;
  socketFastOpenConnect(remote: Endpoint, local?: Endpoint): number;
  socketSetFastOpen(fd: number, qlen: number): void;
}

/** The addon's Fast Open calls, unless the addon is absent or predates them. */
const binding: FastOpenBinding | undefined = (() => {
  const b = native as Partial<FastOpenBinding> | undefined;
  return typeof b?.socketFastOpenConnect === 'function' && typeof b.socketSetFastOpen === 'function' ? (b as FastOpenBinding) : undefined;
})();

/**
 * A socket towards `remote` whose first write leaves in the SYN, as a `net.Socket` that is already "connected"
 * (no `'connect'` event: a refused or unreachable relay shows as an `'error'` on it). Undefined where Fast Open
 * cannot be used: no addon, a host name rather than an IP, a local address of the other family, or a platform
 * without it; the caller then connects as usual.
 */
export function fastOpenSocket(remote: Endpoint, options: { localAddress?: string; allowHalfOpen?: boolean } = {}): Socket | undefined {
  if (!binding || isIP(remote.host) === 0) return undefined;
  const { localAddress } = options;
  if (localAddress !== undefined && isIP(localAddress) !== isIP(remote.host)) return undefined;
  let fd: number;
  try {
    fd = binding.socketFastOpenConnect({ host: remote.host, port: remote.port }, localAddress === undefined ? undefined : { host: localAddress, port: 0 });
  } catch {
    return undefined; // ENOTSUP, EMFILE, EADDRNOTAVAIL...: net.connect reports what applies, with its usual error
  }
  try {
    return new Socket({ fd, readable: true, writable: true, allowHalfOpen: options.allowHalfOpen ?? false });
  } catch {
    binding.socketClose(fd);
    return undefined;
  }
}

/**
 * Lets a listening server (or a listening socket's fd) take data in SYNs. False where it cannot (no addon, no descriptor, the platform); the
 * server then works as before. Whether the kernel honours it is {@link fastOpenServerState}'s to say.
 */
export function enableFastOpen(server: Server | number): boolean {
  const fd = typeof server === 'number' ? server : handleFd(server);
  if (!binding || fd === undefined) return false;
  try {
    binding.socketSetFastOpen(fd, FAST_OPEN_QUEUE);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a listener of this process takes data in SYNs: `on`, `off` (Linux with bit 2 of `net.ipv4.tcp_fastopen`
 * clear in this network namespace; `sysctl -w net.ipv4.tcp_fastopen=3` turns it on), `unavailable` (no addon, or
 * one that predates Fast Open: listeners never ask for it) or `unknown` (the setting cannot be read).
 */
export function fastOpenServerState(): 'on' | 'off' | 'unavailable' | 'unknown' {
  if (!binding) return 'unavailable';
  try {
    const v = Number.parseInt(readFileSync('/proc/sys/net/ipv4/tcp_fastopen', 'utf8'), 10);
    return Number.isInteger(v) ? ((v & 2) !== 0 ? 'on' : 'off') : 'unknown';
  } catch {
    return 'unknown';
  }
}
