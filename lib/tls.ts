/**
 * secureSocket(): end-to-end TLS over a punched or relayed connection, with the TLS client/server sides taken from
 * the roles the rendezvous server assigned (the initiator is the TLS client). tcp-punch authenticates *which peer*
 * is on the socket, but the payload is not encrypted: wrap the socket with this when confidentiality matters.
 *
 * Peers authenticate each other with certificates: each side passes its own `key`/`cert` and, as `ca`, the peer's
 * (self-signed, pinned) certificate or the CA certificate that issued it, and names the peer's certificate identity
 * in `peerName`. The rendezvous server never sees these keys, so neither it nor the relay can read or alter the
 * stream.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { X509Certificate } from 'node:crypto';
import { TLSSocket, connect as tlsConnect, type SecureContextOptions } from 'node:tls';
import { TcpPunchError } from './errors.js';

export interface SecureSocketOptions extends Pick<SecureContextOptions, 'key' | 'cert' | 'ca'> {
  /** `initiator` (the dialer) is the TLS client; `responder` the TLS server. */
  role: 'initiator' | 'responder';
  /** The identity (DNS SAN / CN) the peer's certificate must carry. */
  peerName: string;
  /** Handshake deadline; default 10000 ms. */
  timeoutMs?: number;
}

/** Runs the TLS handshake on `socket` and resolves the encrypted, mutually authenticated stream. */
export function secureSocket(socket: Socket | Duplex, options: SecureSocketOptions): Promise<TLSSocket> {
  const { role, peerName, key, cert, ca, timeoutMs = 10_000 } = options;
  return new Promise((resolve, reject) => {
    let tls: TLSSocket;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      tls.destroy();
      reject(err instanceof TcpPunchError ? err : new TcpPunchError((err as { code?: string }).code ?? 'ERR_TLS', `TLS handshake failed: ${err.message}`, { cause: err }));
    };
    const timer = setTimeout(() => fail(new TcpPunchError('ETIMEDOUT', 'TLS handshake timed out')), timeoutMs);
    const verify = (): void => {
      clearTimeout(timer);
      // A TLSSocket made outside tls.Server never sets `authorized` on the server side: check the chain ourselves.
      const why = role === 'initiator' ? (tls.authorized ? undefined : String(tls.authorizationError)) : checkIssuedBy(tls, ca);
      if (why !== undefined) {
        fail(new TcpPunchError('ERR_TLS_PEER_UNVERIFIED', `peer certificate rejected: ${why}`));
        return;
      }
      const peer = tls.getPeerCertificate();
      const names = [peer.subject?.CN, ...(peer.subjectaltname ?? '').split(', ').map((n) => n.replace(/^DNS:/, ''))];
      if (!names.includes(peerName)) {
        fail(new TcpPunchError('ERR_TLS_PEER_NAME', `peer certificate is not for "${peerName}"`));
        return;
      }
      tls.off('error', fail);
      tls.off('close', onClose);
      resolve(tls);
    };
    const onClose = (): void => fail(new TcpPunchError('ECONNRESET', 'the connection closed during the TLS handshake'));
    if (role === 'initiator') {
      tls = tlsConnect({ socket: socket as Socket, key, cert, ca, servername: peerName, checkServerIdentity: () => undefined });
      tls.once('secureConnect', verify);
    } else {
      tls = new TLSSocket(socket as Socket, { isServer: true, key, cert, ca, requestCert: true, rejectUnauthorized: false });
      tls.once('secure', verify);
    }
    tls.once('error', fail);
    tls.once('close', onClose);
  });
}

/** undefined when the peer's certificate is one of `ca` or directly issued (and signed) by one, else why not. */
function checkIssuedBy(tls: TLSSocket, ca: SecureContextOptions['ca']): string | undefined {
  const peer = tls.getPeerX509Certificate();
  if (!peer) return 'no certificate';
  const now = Date.now();
  if (Date.parse(peer.validFrom) > now || Date.parse(peer.validTo) < now) return 'certificate expired or not yet valid';
  const anchors = (Array.isArray(ca) ? ca : ca === undefined ? [] : [ca]).map((c) => new X509Certificate(c as Buffer | string));
  const ok = anchors.some((a) => peer.raw.equals(a.raw) || (peer.checkIssued(a) && peer.verify(a.publicKey)));
  return ok ? undefined : 'not issued by a trusted certificate';
}
