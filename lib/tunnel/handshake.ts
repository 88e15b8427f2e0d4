/**
 * The tunnel handshake of both sides (wire.ts, step 1): version and flags, the mutual proof of the service key,
 * and the end-to-end encryption that follows it.
 *
 * Key proof: each side sends a fresh 16-byte nonce in its HELLO; the transcript is both peer ids (as the server
 * authenticated them) and both HELLOs. The connecting side proves `HMAC(k, "C" ‖ transcript)`, the exposing side
 * `HMAC(k, "E" ‖ transcript)`, k = HKDF-SHA256(service key, "proof"). A recorded proof is worthless on another
 * connection (the other side's nonce differs), and the flags (hence the choice to encrypt) cannot be altered on
 * the way without the proofs failing.
 *
 * Encryption: TLS 1.3 with an external PSK = HKDF-SHA256(service key, salt = SHA-256(transcript), "tls psk"),
 * so every connection has its own PSK and the TLS keys are fresh besides (TLS mixes both sides' randoms in).
 * The connecting side is the TLS client.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { TcpPunchError } from '../errors.js';
import {
  ACCEPT, FLAG_ENCRYPT, FLAG_KEY, HELLO_LENGTH, NONCE_LENGTH, PROOF_LENGTH, REFUSALS, REFUSE,
  decodeHello, encodeHello, readBytes, type Hello, type RefusalReason,
} from './wire.js';

/** What one side brings to the handshake. */
export interface HandshakeOptions {
  /** The service key (both sides must hold the same); undefined: none. */
  key: Buffer | undefined;
  /** Encrypt the stream (only with a key); both sides must agree. */
  encrypt: boolean;
  /** This side's peer id and the other side's. */
  selfId: string;
  peerId: string;
  /** Deadline of the whole handshake; default 10000 ms. */
  timeoutMs?: number;
}

const TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
const PSK_IDENTITY = 'tcp-punch-tunnel';

/** A service key as given (string or bytes), checked: at least 1 byte. */
export function serviceKey(key: string | Uint8Array | undefined): Buffer | undefined {
  if (key === undefined) return undefined;
  const k = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  if (k.length === 0) throw new TcpPunchError('ERR_SERVICE_KEY', 'the service key is empty');
  return k;
}

/**
 * The connecting side: resolves the stream to use (a TLSSocket when encrypted, else `stream` itself) once the
 * exposing side accepted. Rejects with a TcpPunchError whose code is the refusal's (`ERR_SERVICE_KEY`...) and
 * whose message says "refused by the service: ..." when the exposing side refused.
 */
export async function connectorHandshake(stream: Duplex, o: HandshakeOptions): Promise<Duplex> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  const left = (): number => Math.max(1, deadline - Date.now());
  const mine = encodeHello(flagsOf(o), randomBytes(NONCE_LENGTH));
  stream.write(mine);
  const theirs = decodeHello(await readBytes(stream, HELLO_LENGTH, left()));
  const t = transcript(o.selfId, o.peerId, mine, theirs);
  if (o.key) stream.write(proof(o.key, 'C', t));
  const verdict = (await readBytes(stream, 1, left()))[0];
  if (verdict === REFUSE) {
    const reason = (await readBytes(stream, 1, left()).catch(() => Buffer.from([5])))[0] as RefusalReason;
    const r = REFUSALS[reason] ?? REFUSALS[5];
    const hint = reason === 1 && !o.key ? ' (the service requires a key: --key-file)' : '';
    throw new TcpPunchError(r.code, `refused by the service: ${r.why}${hint}`, { refused: true });
  }
  if (verdict !== ACCEPT) throw new TcpPunchError('ERR_TUNNEL_HANDSHAKE', 'the service answered the tunnel handshake with garbage');
  if (o.key) {
    if (!(theirs.flags & FLAG_KEY)) throw new TcpPunchError('ERR_SERVICE_KEY', 'the service holds no key: it cannot prove it is the service you meant');
    const got = await readBytes(stream, PROOF_LENGTH, left());
    if (!safeEqual(got, proof(o.key, 'E', t))) throw new TcpPunchError('ERR_SERVICE_KEY', 'the service failed the key proof (a different key)');
  }
  return o.key && o.encrypt ? encrypt(stream, 'client', psk(o.key, t), left()) : stream;
}

/**
 * The exposing side: resolves the stream to use once the connecting side proved the key (if one is set).
 * `allowed` false refuses at once (`ERR_SERVICE_NOT_ALLOWED`). Rejects with the refusal's TcpPunchError after
 * telling the other side why; the caller destroys the stream.
 */
export async function exposerHandshake(stream: Duplex, o: HandshakeOptions & { allowed: boolean }): Promise<Duplex> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  const left = (): number => Math.max(1, deadline - Date.now());
  const mine = encodeHello(flagsOf(o), randomBytes(NONCE_LENGTH));
  stream.write(mine);
  const refuse = (reason: RefusalReason, detail?: string): never => {
    stream.end(Buffer.from([REFUSE, reason]));
    const r = REFUSALS[reason];
    // `refusal`: the stream is ending with the refusal on it; the caller lets it flush before destroying it.
    throw new TcpPunchError(r.code, `refused ${o.peerId}: ${detail ?? r.why}`, { refusal: true });
  };
  if (!o.allowed) refuse(2);
  let theirs: Hello;
  try {
    theirs = decodeHello(await readBytes(stream, HELLO_LENGTH, left()));
  } catch (err) {
    const code = (err as TcpPunchError).code;
    if (code === 'ERR_UNSUPPORTED_VERSION') refuse(4, (err as Error).message);
    if (code === 'ERR_TUNNEL_HANDSHAKE') refuse(o.key ? 1 : 5, 'garbage instead of a tunnel handshake');
    throw err;
  }
  if (o.key && !(theirs.flags & FLAG_KEY)) refuse(1, 'no key');
  if (!o.key && theirs.flags & FLAG_KEY) refuse(1, 'it holds a key, this service none');
  if (o.key && Boolean(theirs.flags & FLAG_ENCRYPT) !== o.encrypt) refuse(3);
  const t = transcript(o.peerId, o.selfId, theirs, mine);
  if (o.key) {
    const got = await readBytes(stream, PROOF_LENGTH, left());
    if (!safeEqual(got, proof(o.key, 'C', t))) refuse(1);
    stream.write(Buffer.concat([Buffer.from([ACCEPT]), proof(o.key, 'E', t)]));
  } else {
    stream.write(Buffer.from([ACCEPT]));
  }
  return o.key && o.encrypt ? encrypt(stream, 'server', psk(o.key, t), left()) : stream;
}

function flagsOf(o: HandshakeOptions): number {
  return (o.key ? FLAG_KEY : 0) | (o.key && o.encrypt ? FLAG_ENCRYPT : 0);
}

/** Both peer ids (connecting side first) and both HELLOs, length-prefixed. */
function transcript(connectorId: string, exposerId: string, helloC: Buffer | Hello, helloE: Buffer | Hello): Buffer {
  const bytes = (h: Buffer | Hello): Buffer => (Buffer.isBuffer(h) ? h : encodeRaw(h));
  const id = (s: string): Buffer => {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([Buffer.from([b.length]), b]);
  };
  return Buffer.concat([Buffer.from(`tcp-punch tunnel 2\0`), id(connectorId), id(exposerId), bytes(helloC), bytes(helloE)]);
}

function encodeRaw(h: Hello): Buffer {
  const b = encodeHello(h.flags, h.nonce);
  b[2] = h.version;
  return b;
}

function proof(key: Buffer, side: 'C' | 'E', t: Buffer): Buffer {
  const k = Buffer.from(hkdfSync('sha256', key, 'tcp-punch service key', 'proof', 32));
  return createHmac('sha256', k).update(side).update(t).digest();
}

function psk(key: Buffer, t: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, createHash('sha256').update(t).digest(), 'tls psk', 32));
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** TLS 1.3 with `key` as the external PSK over `stream`; resolves once the handshake is done. */
function encrypt(stream: Duplex, role: 'client' | 'server', key: Buffer, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const common = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: TLS_CIPHERS } as const;
    const socket = stream instanceof Socket ? stream : undefined;
    const tls =
      role === 'client'
        ? tlsConnect({ ...common, socket: socket ?? (stream as Socket), pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }), checkServerIdentity: () => undefined })
        : new TLSSocket((socket ?? stream) as Socket, {
            ...common,
            isServer: true,
            // Accepted by TLSSocket at runtime (as by tls.createServer) though missing from its option type.
            ...({ pskCallback: (_s: unknown, identity: string) => (identity === PSK_IDENTITY ? key : null) } as object),
          });
    const fail = (err: Error): void => {
      clearTimeout(timer);
      tls.destroy();
      stream.destroy();
      reject(new TcpPunchError('ERR_TUNNEL_ENCRYPTION', `the tunnel's TLS handshake failed: ${err.message}`, { cause: err }));
    };
    const timer = setTimeout(() => fail(new Error('timed out')), timeoutMs);
    const onClose = (): void => fail(new Error('the connection closed'));
    tls.once('error', fail);
    tls.once('close', onClose);
    tls.once(role === 'client' ? 'secureConnect' : 'secure', () => {
      clearTimeout(timer);
      tls.off('error', fail);
      tls.off('close', onClose);
      resolve(tls);
    });
  });
}
