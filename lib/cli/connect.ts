/**
 * `tcp-punch connect --server H:P --peer NAME --listen HOST:PORT`: a local port that leads to NAME's service.
 */
import { randomBytes } from 'node:crypto';
import { startTunnelClient } from '../tunnel/client.js';
import { COMMON_HELP, loggerFrom, parse, parseCount, parseHostPort } from './args.js';
import { CliError, EXIT, toCliError } from './errors.js';
import { PEER_HELP, PEER_OPTIONS, connectPeer, logTunnelEvent } from './peer-options.js';
import type { Command } from './run.js';
import { untilSignal } from './signals.js';
import { KEY_HELP, KEY_OPTIONS, WAIT_PEER_HELP, WAIT_PEER_OPTIONS, parseWaitPeer, readServiceKey } from './tunnel-options.js';

const STRATEGIES = ['direct-first', 'relay-first', 'direct', 'relay'] as const;

const HELP = `Usage: tcp-punch connect --server H:P --peer NAME --listen HOST:PORT [flags]

Listens on HOST:PORT; every local connection is carried to NAME's exposed service over a punched connection,
or through the relay when punching fails.

  --peer NAME          the exposed service's name
  --listen HOST:PORT   local address to listen on (port 0 picks one)
  --id ME              this side's name (default: a random one)
  --strategy S         direct-first (default) | relay-first | direct | relay
  --pool N             spare connections kept ready (default 2, 0 to dial per connection)
${WAIT_PEER_HELP}
${KEY_HELP}
${PEER_HELP}
${COMMON_HELP}`;

export const connect: Command = {
  summary: "listen locally and carry each connection to a peer's exposed service",
  help: HELP,
  async run(argv) {
    const v = parse(
      argv,
      { ...PEER_OPTIONS, ...KEY_OPTIONS, ...WAIT_PEER_OPTIONS, peer: { type: 'string' }, listen: { type: 'string' }, strategy: { type: 'string' }, pool: { type: 'string' } },
      HELP,
    );
    const log = loggerFrom(v);
    if (v.peer === undefined) throw new CliError('--peer is required', EXIT.USAGE);
    const listen = parseHostPort(v.listen, '--listen', { minPort: 0, defaultHost: '127.0.0.1' });
    const strategy = v.strategy ?? 'direct-first';
    if (!(STRATEGIES as readonly string[]).includes(strategy)) {
      throw new CliError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}"`, EXIT.USAGE);
    }
    const poolSize = parseCount(v.pool, '--pool', { min: 0, max: 32 }) ?? 2;
    const waitPeerMs = parseWaitPeer(v['wait-peer']);
    const key = readServiceKey(v);
    const encrypt = !v['no-encrypt'];
    if (!key && !encrypt) throw new CliError('--no-encrypt needs a key (--key or --key-file): without one nothing is encrypted', EXIT.USAGE);
    const id = v.id ?? `connect-${randomBytes(6).toString('hex')}`;
    const peer = await connectPeer(v, id, log);
    let client;
    // A service that refuses this side's key (or id) will refuse every tunnel: stop with its reason.
    let onRefused!: (message: string) => void;
    const refused = new Promise<string>((resolve) => (onRefused = resolve));
    try {
      client = await startTunnelClient(peer, {
        peerId: v.peer,
        listen,
        strategy,
        poolSize,
        waitPeerMs,
        ...(key ? { key, encrypt } : {}),
        onEvent: (e) => {
          logTunnelEvent(log, e);
          if (e.type === 'fail' && e.refused) onRefused(`${e.message} (${e.code})`);
        },
      });
    } catch (err) {
      await peer.close();
      throw toCliError(err, `listening on ${listen.host}:${listen.port}`);
    }
    const addr = client.address();
    log.info('listening', { address: addr.address, port: addr.port, peer: v.peer, strategy }, `listening on ${addr.address}:${addr.port} → "${v.peer}" (${strategy}) — Ctrl-C to stop`);
    const stopped = new Promise<Error | undefined>((resolve) => peer.once('close', resolve));
    const outcome = await Promise.race([untilSignal(), stopped, refused.then((m) => new CliError(m, EXIT.AUTH))]);
    await client.close();
    await peer.close();
    if (outcome instanceof Error) throw toCliError(outcome, 'peer');
    log.info('stopped', { signal: outcome }, `stopped (${outcome ?? 'peer closed'})`);
    return EXIT.OK;
  },
};
