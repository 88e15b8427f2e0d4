/**
 * `tcp-punch expose --server H:P --id NAME --to HOST:PORT`: registers NAME and forwards every peer connection to
 * the local service.
 */
import { describeAccess } from '../tunnel/access.js';
import { exposeService } from '../tunnel/expose.js';
import { COMMON_HELP, loggerFrom, parse, parseHostPort } from './args.js';
import { CliError, EXIT } from './errors.js';
import { PEER_HELP, PEER_OPTIONS, connectPeer, logTunnelEvent } from './peer-options.js';
import type { Command } from './run.js';
import { untilSignal } from './signals.js';
import { EXPOSE_ACCESS_HELP, EXPOSE_ACCESS_OPTIONS, KEY_HELP, KEY_OPTIONS, parseAllow, readServiceKey } from './tunnel-options.js';

const HELP = `Usage: tcp-punch expose --server H:P --id NAME --to HOST:PORT [flags]

Registers NAME with the server and carries every connection a peer makes to NAME to the local service
HOST:PORT, over a punched connection or the relay.

  --id NAME          the name peers connect to (1-64 printable characters, no spaces)
  --to HOST:PORT     the local service
${KEY_HELP}
${EXPOSE_ACCESS_HELP}
${PEER_HELP}
${COMMON_HELP}`;

export const expose: Command = {
  summary: 'offer a local TCP service to peers under a name',
  help: HELP,
  async run(argv) {
    const v = parse(argv, { ...PEER_OPTIONS, ...KEY_OPTIONS, ...EXPOSE_ACCESS_OPTIONS, to: { type: 'string' } }, HELP);
    const log = loggerFrom(v);
    if (v.id === undefined) throw new CliError('--id is required', EXIT.USAGE);
    const to = parseHostPort(v.to, '--to');
    const key = readServiceKey(v);
    const allow = parseAllow(v.allow);
    const encrypt = !v['no-encrypt'];
    if (!key && !encrypt) throw new CliError('--no-encrypt needs a key (--key or --key-file): without one nothing is encrypted', EXIT.USAGE);
    const peer = await connectPeer(v, v.id, log);
    let access: string;
    try {
      access = describeAccess({ key: key !== undefined, ...(allow ? { allow } : {}), public: v.public === true }, peer.serverAuth !== 'secret');
    } catch (err) {
      await peer.close();
      throw new CliError((err as Error).message, EXIT.USAGE);
    }
    const service = exposeService(peer, { to, ...(key ? { key, encrypt } : {}), ...(allow ? { allow } : {}), onEvent: (e) => logTunnelEvent(log, e) });
    const mode = key ? (encrypt ? 'encrypted end to end' : 'key proven, not encrypted') : 'not encrypted';
    log.info('exposing', { id: v.id, to, access, encrypted: Boolean(key && encrypt) }, `exposing ${to.host}:${to.port} as "${v.id}" (${access}; ${mode}) — Ctrl-C to stop`);
    const stopped = new Promise<Error | undefined>((resolve) => peer.once('close', resolve));
    const outcome = await Promise.race([untilSignal(), stopped]);
    service.close();
    await peer.close();
    if (outcome instanceof Error) throw outcome;
    log.info('stopped', { signal: outcome }, `stopped (${outcome ?? 'peer closed'})`);
    return EXIT.OK;
  },
};
