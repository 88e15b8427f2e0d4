/**
 * The answering side of dials: what becomes of a coordination another peer started towards this one — the
 * `accept` policy, the relay-first streams this peer accepted (a later direct dial whose `link` names one of them
 * upgrades it), and the `connection` and `upgrade` events, which the host emits.
 */
import type { Socket } from 'node:net';

import { TcpPunchError } from '../errors.js';
import { UpgradableStream } from '../upgrade.js';
import type { PeerCoordination } from './coordination.js';
import type { ConnectionInfo, IncomingDial, Role } from './types.js';

/** What {@link Incoming} needs from its peer. */
export interface IncomingHost {
  readonly id: string;
  /** `options.accept`, if any. */
  readonly accept: ((dial: IncomingDial) => boolean | Promise<boolean>) | undefined;
  /** True while someone listens for `connection` (nobody would take the socket otherwise). */
  listening(): boolean;
  connection(socket: Socket | UpgradableStream, info: ConnectionInfo): void;
  upgraded(info: { peerId: string; coordId: string; role: Role }): void;
}

/** The dials this peer answers. */
export class Incoming {
  /** Relay-upgradable streams this peer accepted, by coordId. */
  private readonly upgradable = new Map<string, { stream: UpgradableStream; peerId: string }>();

  constructor(private readonly host: IncomingHost) {}

  /** Runs coordination `pc`, which another peer started towards this one. */
  answer(pc: PeerCoordination): void {
    if (pc.link) {
      this.acceptUpgrade(pc);
      return pc.begin();
    }
    pc.result.then(({ socket, ...info }) => {
      if (!this.host.listening()) return void socket.destroy();
      if (pc.path === 'relay-upgradable') {
        const stream = new UpgradableStream(socket as Socket);
        this.upgradable.set(pc.key, { stream, peerId: pc.peerId });
        stream.once('close', () => this.upgradable.delete(pc.key));
        stream.once('upgrade', () => this.upgradable.delete(pc.key));
        return void this.host.connection(stream, info);
      }
      this.host.connection(socket, info);
    }, () => undefined);
    const refuse = (): void => pc.cancel(new TcpPunchError('ERR_PEER_REFUSED', `${this.host.id} refused the connection`), true);
    if (!this.host.listening()) return refuse();
    const { accept } = this.host;
    if (!accept) return pc.begin();
    pc.hold();
    pc.begin();
    Promise.resolve()
      .then(() => accept({ peerId: pc.peerId, path: pc.path === 'direct' ? 'direct' : 'relay' }))
      .then((ok) => (ok === true ? pc.open() : refuse()), refuse);
  }

  /** A direct dial that upgrades a relay-first stream accepted earlier: its socket goes to that stream. */
  private acceptUpgrade(pc: PeerCoordination): void {
    const entry = this.upgradable.get(pc.link);
    if (!entry || entry.peerId !== pc.peerId || entry.stream.destroyed) {
      return pc.cancel(new TcpPunchError('ERR_UPGRADE_UNKNOWN', 'No relayed stream to upgrade'), true);
    }
    pc.result.then(
      ({ socket }) => {
        if (entry.stream.destroyed) return void socket.destroy();
        entry.stream.upgrade(socket as Socket).then(
          () => this.host.upgraded({ peerId: pc.peerId, coordId: pc.link, role: pc.role }),
          () => undefined,
        );
      },
      () => undefined,
    );
  }
}
