/**
 * UpgradableStream: one byte stream that starts on a relayed socket and moves to a direct one without losing,
 * duplicating or reordering a byte (the `relay-first` dial strategy).
 *
 * Each direction switches on its own. When a side upgrades, it stops writing to the relay and sends, first thing on
 * the direct socket, a header with the number of bytes it wrote to the relay (and whether it had already ended its
 * stream there); everything it writes afterwards goes to the direct socket. The reading side keeps reading the relay
 * until it has exactly that many bytes, and only then reads the direct socket. Once both directions have moved,
 * each side ends its relay socket.
 *
 * A FIN on the relay means "end of stream" only while this side has not started its upgrade: the peer can end its
 * relay socket as part of the upgrade only after reading our header, which we send when we upgrade. After that, a
 * relay FIN is interpreted by the header that says whether the stream had ended.
 *
 * Header on the direct socket (13 bytes): "TPUP" · flags u8 (bit 0: the writer had ended) · relayed byte count u64 BE.
 *
 * Errors: `ERR_UPGRADE_PROTOCOL` when the peer's header is malformed or the relay carries more bytes than announced;
 * `ERR_UPGRADE_STATE` when upgrade() is called twice or after the stream was destroyed.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { TcpPunchError } from './errors.js';

const MAGIC = 0x54505550; // "TPUP"
const HEADER_BYTES = 13;
const FLAG_ENDED = 1;

/** Which socket carries the stream's bytes in both directions. */
export type StreamPath = 'relay' | 'direct';

/** @event upgrade Emitted once both directions have moved to the direct socket. */
export class UpgradableStream extends Duplex {
  #relay: Socket;
  #direct: Socket | undefined;
  #writeTarget: Socket;
  #relayWritten = 0n;
  #relayRead = 0n;
  #writerEnded = false;
  #peerCount: bigint | undefined; // bytes the peer wrote to the relay, once its header arrived
  #peerEnded = false;
  #header = Buffer.alloc(0);
  #pendingDirect: Buffer[] = [];
  #readSource: 'relay' | 'direct' = 'relay';
  #pushedEof = false;
  #relayEof = false;
  #relayDone = false;
  #upgraded = false;
  #directGone = false; // the direct socket ended before the peer's header: the peer never moved

  constructor(relay: Socket) {
    // Closing waits for the upgrade as well as for both directions to end (see #maybeClose).
    super({ allowHalfOpen: true, autoDestroy: false });
    this.#relay = relay;
    this.#writeTarget = relay;
    // Each direction ends on its own schedule: a FIN from the peer must not end our writing side.
    relay.allowHalfOpen = true;
    relay.on('data', (d: Buffer) => this.#onRelayData(d));
    relay.on('end', () => this.#onRelayEnd());
    relay.on('error', (err) => this.#onSocketError('relay', err));
    relay.on('close', () => this.#onRelayClose());
    this.on('end', () => this.#maybeClose());
    this.on('finish', () => this.#maybeClose());
  }

  /** `relay` until both directions have moved, then `direct`. */
  get path(): StreamPath {
    return this.#upgraded ? 'direct' : 'relay';
  }

  /** Bytes this side wrote to the relay before moving to the direct socket. */
  get bytesWrittenToRelay(): number {
    return Number(this.#relayWritten);
  }

  /** Bytes this side read from the relay. */
  get bytesReadFromRelay(): number {
    return Number(this.#relayRead);
  }

  /**
   * Moves this side to `direct`, an authenticated direct connection to the same peer. `leftover` holds bytes
   * already read from `direct` past the authentication (they are the start of the peer's header).
   * Resolves once both directions run on the direct socket.
   */
  upgrade(direct: Socket, leftover: Buffer = Buffer.alloc(0)): Promise<void> {
    if (this.#direct || this.destroyed) {
      return Promise.reject(new TcpPunchError('ERR_UPGRADE_STATE', this.#direct ? 'already upgraded' : 'stream destroyed'));
    }
    this.#direct = direct;
    direct.allowHalfOpen = true;
    const done = new Promise<void>((resolve, reject) => {
      const onUpgrade = (): void => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.off('upgrade', onUpgrade);
        reject(this.errored ?? new TcpPunchError('ERR_UPGRADE_STATE', 'stream closed before the upgrade completed'));
      };
      this.once('upgrade', onUpgrade);
      this.once('close', onClose);
    });

    direct.on('error', (err) => this.#onSocketError('direct', err));
    direct.on('end', () => this.#onDirectEnd());
    direct.on('data', (d: Buffer) => this.#onDirectData(d));
    if (leftover.length > 0) this.#onDirectData(leftover);

    // Our write direction moves now: the header counts every byte handed to the relay so far.
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(MAGIC, 0);
    header.writeUInt8(this.#writerEnded ? FLAG_ENDED : 0, 4);
    header.writeBigUInt64BE(this.#relayWritten, 5);
    direct.write(header);
    this.#writeTarget = direct;
    if (this.#writerEnded) direct.end();
    this.#maybeFinishRelay();
    return done;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#writeTarget === this.#relay) this.#relayWritten += BigInt(chunk.length);
    this.#writeTarget.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#writerEnded = true;
    this.#writeTarget.end(cb);
  }

  override _read(): void {
    if (this.#readSource === 'relay') this.#relay.resume();
    else this.#direct?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#relay.destroy();
    this.#direct?.destroy();
    cb(err);
  }

  #push(data: Buffer, from: Socket): void {
    if (!this.push(data)) from.pause();
  }

  #pushEof(): void {
    if (this.#pushedEof) return;
    this.#pushedEof = true;
    this.push(null);
  }

  #onRelayData(d: Buffer): void {
    if (this.#peerCount !== undefined && this.#relayRead + BigInt(d.length) > this.#peerCount) {
      this.destroy(new TcpPunchError('ERR_UPGRADE_PROTOCOL', 'the relay carried more bytes than the peer announced'));
      return;
    }
    this.#relayRead += BigInt(d.length);
    this.#push(d, this.#relay);
    this.#maybeSwitchReader();
  }

  #onRelayEnd(): void {
    this.#relayEof = true;
    // Before we upgraded, the peer cannot have moved yet: a FIN is the end of the stream.
    if (!this.#direct) {
      this.#peerEnded = true;
      this.#pushEof();
      return;
    }
    if (this.#peerCount === undefined) {
      // The header on the direct socket will say what this FIN means, unless that socket is already gone.
      if (this.#directGone) this.#pushEof();
      return;
    }
    if (this.#relayRead < this.#peerCount) {
      this.destroy(new TcpPunchError('ERR_UPGRADE_PROTOCOL', 'the relay ended before the announced byte count'));
    }
  }

  #onRelayClose(): void {
    if (this.#relayDone || this.destroyed) return;
    // The relay went away while bytes could still be owed on it.
    if (!this.#relayEof) {
      this.destroy(new TcpPunchError('ERR_RELAY_CLOSED', 'the relay connection closed before the stream moved to the direct path'));
    }
  }

  #onDirectData(d: Buffer): void {
    if (this.#peerCount === undefined) {
      this.#header = Buffer.concat([this.#header, d]);
      if (this.#header.length < HEADER_BYTES) return;
      if (this.#header.readUInt32BE(0) !== MAGIC) {
        this.destroy(new TcpPunchError('ERR_UPGRADE_PROTOCOL', 'bad upgrade header on the direct connection'));
        return;
      }
      this.#peerEnded = (this.#header.readUInt8(4) & FLAG_ENDED) !== 0;
      this.#peerCount = this.#header.readBigUInt64BE(5);
      const rest = this.#header.subarray(HEADER_BYTES);
      this.#header = Buffer.alloc(0);
      if (this.#relayRead > this.#peerCount) {
        this.destroy(new TcpPunchError('ERR_UPGRADE_PROTOCOL', 'the relay carried more bytes than the peer announced'));
        return;
      }
      if (rest.length > 0) this.#pendingDirect.push(rest);
      if (this.#relayEof && this.#relayRead < this.#peerCount) {
        this.destroy(new TcpPunchError('ERR_UPGRADE_PROTOCOL', 'the relay ended before the announced byte count'));
        return;
      }
      this.#maybeSwitchReader();
      return;
    }
    if (this.#readSource === 'relay') {
      // Still draining the relay: hold direct bytes back (TCP flow control does the rest).
      this.#pendingDirect.push(d);
      this.#direct!.pause();
      return;
    }
    this.#push(d, this.#direct!);
  }

  #onDirectEnd(): void {
    if (this.#peerCount === undefined) return this.#directLost();
    if (this.#readSource === 'direct') this.#pushEof();
    else this.#pendingDirect.push(Buffer.alloc(0)); // an empty marker: EOF after the held-back bytes
  }

  #maybeSwitchReader(): void {
    if (this.#readSource === 'direct' || this.#peerCount === undefined || this.#relayRead !== this.#peerCount) return;
    this.#readSource = 'direct';
    const direct = this.#direct!;
    if (this.#peerEnded) this.#pushEof();
    for (const chunk of this.#pendingDirect.splice(0)) {
      if (chunk.length === 0) this.#pushEof();
      else if (!this.#pushedEof) this.#push(chunk, direct);
    }
    if (!this.#pushedEof) direct.resume();
    this.#maybeFinishRelay();
  }

  #maybeFinishRelay(): void {
    if (this.#relayDone || this.#writeTarget === this.#relay || this.#readSource !== 'direct') return;
    this.#relayDone = true;
    // Both directions are on the direct socket: the relay has nothing left to carry.
    this.#relay.end();
    this.#relay.resume();
    this.#upgraded = true;
    this.emit('upgrade');
    this.#maybeClose();
  }

  /** Both directions ended and no upgrade is half done: release the sockets (graceful ends were sent already). */
  #maybeClose(): void {
    if (this.destroyed || !this.readableEnded || !this.writableFinished) return;
    if (this.#direct && !this.#upgraded && !this.#directGone) return;
    this.destroy();
  }

  #onSocketError(which: 'relay' | 'direct', err: Error): void {
    if (which === 'relay' && this.#relayDone) return;
    // A direct socket lost before the peer's header, with nothing of ours owed on it: the peer never moved.
    if (which === 'direct' && this.#peerCount === undefined && this.#writerEnded) return this.#directLost();
    this.destroy(err);
  }

  /**
   * The direct socket ended before the peer announced anything on it: the peer never upgraded (it finished on the
   * relay and dropped the socket). The stream stays on the relay, whose FIN is then the end of the stream.
   */
  #directLost(): void {
    if (this.#directGone) return;
    this.#directGone = true;
    if (this.#relayEof) {
      this.#peerEnded = true;
      this.#pushEof();
    }
    this.#maybeClose();
  }
}
