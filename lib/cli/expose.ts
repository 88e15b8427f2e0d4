/**
 * `tcp-punch expose --server H:P --id NAME --to HOST:PORT`: registers NAME and forwards every peer connection to
 * the local service.
 */
import { exposeService } from '../tunnel/expose.js';
import { COMMON_HELP, loggerFrom, parse, parseHostPort } from './args.js';
import { CliError, EXIT } from './errors.js';
import { PEER_HELP, PEER_OPTIONS, connectPeer, logTunnelEvent } from './peer-options.js';
import type { Command } from './run.js';
import { untilSignal } from './signals.js';

const HELP = `Usage: tcp-punch expose --server H:P --id NAME --to HOST:PORT [flags]

Registers NAME with the server and carries every connection a peer makes to NAME to the local service
HOST:PORT, over a punched connection or the relay.

  --id NAME          the name peers connect to (1-64 printable characters, no spaces)
  --to HOST:PORT     the local service
${PEER_HELP}
${COMMON_HELP}`;

export const expose: Command = {
  summary: 'offer a local TCP service to peers under a name',
  help: HELP,
  async run(argv) {
    const v = parse(argv, { ...PEER_OPTIONS, to: { type: 'string' } }, HELP);
    const log = loggerFrom(v);
    if (v.id === undefined) throw new CliError('--id is required', EXIT.USAGE);
    const to = parseHostPort(v.to, '--to');
    const peer = await connectPeer(v, v.id, log);
    const service = exposeService(peer, { to, onEvent: (e) => logTunnelEvent(log, e) });
    log.info('exposing', { id: v.id, to }, `exposing ${to.host}:${to.port} as "${v.id}" — Ctrl-C to stop`);
    const stopped = new Promise<Error | undefined>((resolve) => peer.once('close', resolve));
    const outcome = await Promise.race([untilSignal(), stopped]);
    service.close();
    await peer.close();
    if (outcome instanceof Error) throw outcome;
    log.info('stopped', { signal: outcome }, `stopped (${outcome ?? 'peer closed'})`);
    return EXIT.OK;
  },
};
