/**
 * `tcp-punch connect --server H:P --peer NAME --listen HOST:PORT` (or `--map [HOST:]PORT=NAME`, repeatable): local
 * ports that lead to exposed services, all through one registration with the server.
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_POOL_SIZE, startTunnelClient, type TunnelClient } from '../tunnel/client.js';
import { COMMON_OPTIONS, CONFIG_OPTIONS, loggerFrom, parseCount, parseHostPort, type HostPort } from './args.js';
import type { Command } from './command.js';
import { readSettings, type CommandSettings, type Settings } from './config.js';
import { CliError, EXIT, toCliError } from './errors.js';
import { renderFlags, type FlagSection, type Flags } from './flags.js';
import {
  PEER_OPTIONS, checkId, connectPeer, logTunnelEvent, metricsSettings, peerSettings, splitPair, startAgentMetrics, type AgentMetrics,
} from './peer-options.js';
import { untilSignal } from './signals.js';
import { KEY_OPTIONS, WAIT_PEER_OPTIONS, parseWaitPeer, readServiceKey } from './tunnel-options.js';

const STRATEGIES = ['direct-first', 'relay-first', 'direct', 'relay'] as const;
const DEFAULT_STRATEGY = 'direct-first';

/** One local port and the service it leads to; per-map options go here too. */
export interface MapSpec {
  peer: string;
  listen: HostPort;
  strategy: (typeof STRATEGIES)[number];
  poolSize: number;
}

/** The keys of a `[[map]]` table in the config file: each may set its own strategy and pool. */
const MAP_KEYS = {
  peer: { type: 'string' },
  listen: { type: 'string' },
  strategy: { type: 'string' },
  pool: { type: 'string' },
} as const satisfies Flags;

const SECTIONS: FlagSection[] = [
  {
    flags: {
      peer: { type: 'string', arg: 'NAME', help: "the exposed service's name" },
      listen: { type: 'string', arg: 'HOST:PORT', help: 'local address to listen on for --peer (port 0 picks one)' },
      map: {
        type: 'string',
        multiple: true,
        arg: '[HOST:]PORT=NAME',
        help: 'one more local port leading to service NAME (host default 127.0.0.1; repeatable;\nin a config file: [[map]] listen, peer, and optionally strategy, pool)',
      },
      id: { type: 'string', arg: 'ME', help: "this side's name (default: a random one)" },
      strategy: { type: 'string', arg: 'S', help: STRATEGIES.map((x) => (x === DEFAULT_STRATEGY ? `${x} (default)` : x)).join(' | ') },
      pool: { type: 'string', arg: 'N', help: `spare connections kept ready per port (default ${DEFAULT_POOL_SIZE}, 0 to dial per connection)` },
      ...WAIT_PEER_OPTIONS,
      ...KEY_OPTIONS,
      ...PEER_OPTIONS,
      ...CONFIG_OPTIONS,
    },
  },
  { flags: COMMON_OPTIONS },
];

const HELP = `Usage: tcp-punch connect --server H:P (--peer NAME --listen HOST:PORT | --map [HOST:]PORT=NAME ...) [flags]

Listens on each local address; every local connection is carried to its service's exposing peer over a punched
connection, or through the relay when punching fails.

${renderFlags(SECTIONS)}`;

export const connect: Command = {
  help: HELP,
  async run(argv) {
    const settings = readSettings(argv, SECTIONS, HELP, { map: MAP_KEYS });
    const log = loggerFrom(settings.values);
    const maps = mapsOf(settings);
    const id = checkId((settings.values.id as string | undefined) ?? `connect-${randomBytes(6).toString('hex')}`, settings.where('id'));
    const peerOptions = peerSettings(settings, log);
    const metricsAt = metricsSettings(settings);
    const { values, where } = settings;
    const waitPeerMs = parseWaitPeer(values['wait-peer'] as string | undefined, where('wait-peer'));
    const key = readServiceKey(values, where);
    const encrypt = !values['no-encrypt'];
    if (!key && !encrypt) throw new CliError(`${where('no-encrypt')} needs a key (--key or --key-file): without one nothing is encrypted`, EXIT.USAGE);
    // A service that refuses this side's key (or id) will refuse every tunnel: stop with its reason.
    let onRefused!: (message: string) => void;
    const refused = new Promise<string>((resolve) => (onRefused = resolve));

    let metrics: AgentMetrics | undefined;
    const clients: TunnelClient[] = [];
    const several = maps.length > 1;
    if (metricsAt) metrics = await startAgentMetrics(metricsAt, log);
    const peer = await connectPeer(peerOptions, id, log).catch(async (err: unknown) => {
      await metrics?.close();
      throw err;
    });
    const stop = async (): Promise<void> => {
      await Promise.all(clients.map((c) => c.close()));
      await peer.close();
      await metrics?.close();
    };
    try {
      for (const m of maps) {
        const client = await startTunnelClient(peer, {
          peerId: m.peer,
          listen: m.listen,
          strategy: m.strategy,
          poolSize: m.poolSize,
          waitPeerMs,
          ...(key ? { key, encrypt } : {}),
          onEvent: (e) => {
            logTunnelEvent(log, e); // its peer is the service: the line names it already
            metrics?.onEvent(e, m.peer);
            if (e.type === 'fail' && e.refused) onRefused(`${e.message} (${e.code})`);
          },
        }).catch((err: unknown) => {
          throw toCliError(err, `listening on ${m.listen.host}:${m.listen.port}`);
        });
        clients.push(client);
        const addr = client.address();
        log.info(
          'listening',
          { address: addr.address, port: addr.port, peer: m.peer, strategy: m.strategy },
          `listening on ${addr.address}:${addr.port} → "${m.peer}" (${m.strategy})${several ? '' : ' — Ctrl-C to stop'}`,
        );
      }
    } catch (err) {
      await stop();
      throw err;
    }
    const stopped = new Promise<Error | undefined>((resolve) => peer.once('close', resolve));
    const outcome = await Promise.race([untilSignal(), stopped, refused.then((m) => new CliError(m, EXIT.AUTH))]);
    await stop();
    if (outcome instanceof Error) throw toCliError(outcome, 'peer');
    log.info('stopped', { signal: outcome }, `stopped (${outcome ?? 'peer closed'})`);
    return EXIT.OK;
  },
};

function strategyOf(value: string | undefined, where: string, fallback: MapSpec['strategy']): MapSpec['strategy'] {
  if (value === undefined) return fallback;
  if (!(STRATEGIES as readonly string[]).includes(value)) throw new CliError(`${where} must be one of ${STRATEGIES.join(', ')}, got "${value}"`, EXIT.USAGE);
  return value as MapSpec['strategy'];
}

const poolOf = (value: string | undefined, where: string, fallback: number): number => parseCount(value, where, { min: 0, max: 32 }) ?? fallback;

/**
 * The local ports asked for: `--peer`/`--listen`, `--map` items and the config file's `[[map]]` tables. One local
 * address given twice in one place is an error; one given on the command line replaces the file's.
 */
export function mapsOf(s: CommandSettings): MapSpec[] {
  const strategy = strategyOf(s.values.strategy as string | undefined, s.where('strategy'), DEFAULT_STRATEGY);
  const poolSize = poolOf(s.values.pool as string | undefined, s.where('pool'), DEFAULT_POOL_SIZE);
  const maps: (MapSpec & { where: string; fromFile: boolean })[] = [];
  const add = (m: MapSpec, where: string, fromFile: boolean): void => {
    const key = (x: MapSpec): string => `${x.listen.host}:${x.listen.port}`;
    const i = m.listen.port === 0 ? -1 : maps.findIndex((x) => key(x) === key(m));
    if (i >= 0 && maps[i]!.fromFile === fromFile) throw new CliError(`${where}: ${key(m)} is mapped twice (also in ${maps[i]!.where})`, EXIT.USAGE);
    if (i >= 0) maps.splice(i, 1);
    maps.push({ ...m, where, fromFile });
  };
  for (const entry of s.tables.map ?? []) add(tableMap(entry, strategy, poolSize), entry.where('listen'), true);
  const peer = s.values.peer as string | undefined;
  const listen = s.values.listen as string | undefined;
  if (peer !== undefined || listen !== undefined) {
    if (peer === undefined) throw new CliError(`${s.where('listen')} needs --peer NAME`, EXIT.USAGE);
    const fromFile = !s.where('peer').startsWith('--');
    add(
      { peer: checkId(peer, s.where('peer')), listen: parseHostPort(listen, s.where('listen'), { minPort: 0, defaultHost: '127.0.0.1' }), strategy, poolSize },
      s.where('listen'),
      fromFile,
    );
  }
  for (const item of (s.values.map as string[] | undefined) ?? []) {
    const [local, name] = splitPair(item, '--map', '[HOST:]PORT=NAME');
    const m = { peer: checkId(name, `--map ${item}`), listen: parseHostPort(local, `--map ${item}`, { minPort: 0, defaultHost: '127.0.0.1' }), strategy, poolSize };
    add(m, `--map ${item}`, false);
  }
  if (maps.length === 0) throw new CliError('--peer is required (with --listen HOST:PORT), or give --map PORT=NAME', EXIT.USAGE);
  return maps.map(({ peer: p, listen: l, strategy: st, poolSize: ps }) => ({ peer: p, listen: l, strategy: st, poolSize: ps }));
}

function tableMap(entry: Settings, strategy: MapSpec['strategy'], poolSize: number): MapSpec {
  const peer = entry.values.peer as string | undefined;
  if (peer === undefined) throw new CliError(`${entry.where('peer')}: missing (every [[map]] needs a listen and a peer)`, EXIT.USAGE);
  return {
    peer: checkId(peer, entry.where('peer')),
    listen: parseHostPort(entry.values.listen as string | undefined, entry.where('listen'), { minPort: 0, defaultHost: '127.0.0.1' }),
    strategy: strategyOf(entry.values.strategy as string | undefined, entry.where('strategy'), strategy),
    poolSize: poolOf(entry.values.pool as string | undefined, entry.where('pool'), poolSize),
  };
}
