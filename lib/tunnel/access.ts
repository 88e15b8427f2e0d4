/**
 * Who may reach an exposed service: holders of its key, the peers on its allow list, or (explicitly) everyone.
 * One decision for the library and the CLI.
 */
import { TcpPunchError } from '../errors.js';

export interface AccessOptions {
  /** A service key is set. */
  key: boolean;
  /** Peer ids allowed to connect (as the server authenticated them); undefined: any. */
  allow?: readonly string[];
  /** The service is meant for everyone. */
  public?: boolean;
}

/**
 * One line saying who may connect. Throws `ERR_SERVICE_OPEN` when the server is open (anyone may register a peer)
 * and neither a key nor an allow list guards the service, unless it is declared public.
 */
export function describeAccess(o: AccessOptions, serverOpen: boolean): string {
  const parts: string[] = [];
  if (o.allow) parts.push(`only peers ${o.allow.join(', ')}`);
  if (o.key) parts.push('holding the service key');
  if (parts.length > 0) return `who may connect: ${parts.join(', ')}`;
  if (serverOpen && !o.public) {
    throw new TcpPunchError(
      'ERR_SERVICE_OPEN',
      'the server is open (anyone may register a peer): give the service a key (--key-file) or an allow list (--allow), or say --public',
    );
  }
  return serverOpen ? 'who may connect: anyone (public, on an open server)' : "who may connect: any peer of the server (anyone with the server's secret)";
}
