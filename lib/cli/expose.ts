/**
 * `tcp-punch expose --server H:P --id NAME --to HOST:PORT` (or `--service NAME=HOST:PORT`, repeatable): registers
 * each NAME with the server and carries every peer connection to NAME to its local service. Each service is a
 * peer of its own on the server (its name is the id peers dial), so one process serves many, like frpc.
 */
import type { Peer } from '../peer/index.js';
import { describeAccess } from '../tunnel/access.js';
import { exposeService, type ExposedService } from '../tunnel/expose.js';
import { COMMON_OPTIONS, CONFIG_OPTIONS, loggerFrom, parseHostPort, type HostPort } from './args.js';
import type { Command } from './command.js';
import { readSettings, type CommandSettings, type Settings } from './config.js';
import { CliError, EXIT } from './errors.js';
import { renderFlags, type FlagSection, type Flags } from './flags.js';
import {
  PEER_OPTIONS, checkId, connectPeer, logTunnelEvent, metricsSettings, peerSettings, splitPair, startAgentMetrics, type AgentMetrics,
} from './peer-options.js';
import { untilSignal } from './signals.js';
import { EXPOSE_ACCESS_OPTIONS, KEY_OPTIONS, parseAllow, readServiceKey } from './tunnel-options.js';

/** One service to expose; per-service options go here too. */
export interface ServiceSpec {
  /** The name peers dial (this service's peer id). */
  name: string;
  to: HostPort;
}

/** The keys of a `[[service]]` table in the config file. */
const SERVICE_KEYS = {
  name: { type: 'string' },
  to: { type: 'string' },
} as const satisfies Flags;

const SECTIONS: FlagSection[] = [
  {
    flags: {
      id: { type: 'string', arg: 'NAME', help: 'the name peers connect to (1-64 printable characters, no spaces)' },
      to: { type: 'string', arg: 'HOST:PORT', help: "the local service of --id" },
      service: {
        type: 'string',
        multiple: true,
        arg: 'NAME=HOST:PORT',
        help: 'one more service, offered under NAME (repeatable;\nin a config file: [[service]] with name and to)',
      },
      ...KEY_OPTIONS,
      ...EXPOSE_ACCESS_OPTIONS,
      ...PEER_OPTIONS,
      ...CONFIG_OPTIONS,
    },
  },
  { flags: COMMON_OPTIONS },
];

const HELP = `Usage: tcp-punch expose --server H:P (--id NAME --to HOST:PORT | --service NAME=HOST:PORT ...) [flags]

Registers each NAME with the server and carries every connection a peer makes to NAME to its local service
HOST:PORT, over a punched connection or the relay.

${renderFlags(SECTIONS)}`;

export const expose: Command = {
  help: HELP,
  async run(argv) {
    const settings = readSettings(argv, SECTIONS, HELP, { service: SERVICE_KEYS });
    const log = loggerFrom(settings.values);
    const services = servicesOf(settings);
    const peerOptions = peerSettings(settings, log);
    const metricsAt = metricsSettings(settings);
    const { values, where } = settings;
    const key = readServiceKey(values, where);
    const allow = parseAllow(values.allow as string | undefined, where('allow'));
    const encrypt = !values['no-encrypt'];
    if (!key && !encrypt) throw new CliError(`${where('no-encrypt')} needs a key (--key or --key-file): without one nothing is encrypted`, EXIT.USAGE);
    const mode = key ? (encrypt ? 'encrypted end to end' : 'key proven, not encrypted') : 'not encrypted';

    // Everything is checked above; from here a failure undoes what started, so nothing runs half-configured.
    const running: { peer: Peer; service: ExposedService }[] = [];
    let metrics: AgentMetrics | undefined;
    const stop = async (): Promise<void> => {
      for (const r of running) r.service.close();
      await Promise.all(running.map((r) => r.peer.close()));
      await metrics?.close();
    };
    try {
      if (metricsAt) metrics = await startAgentMetrics(metricsAt, log);
      const several = services.length > 1;
      for (const s of services) {
        const peer = await connectPeer(peerOptions, s.name, log);
        let access: string;
        try {
          access = describeAccess({ key: key !== undefined, ...(allow ? { allow } : {}), public: values.public === true }, peer.serverAuth !== 'secret');
        } catch (err) {
          await peer.close();
          throw new CliError((err as Error).message, EXIT.USAGE);
        }
        const service = exposeService(peer, {
          to: s.to,
          ...(key ? { key, encrypt } : {}),
          ...(allow ? { allow } : {}),
          onEvent: (e) => {
            logTunnelEvent(log, e, several ? s.name : undefined);
            metrics?.onEvent(e, s.name);
          },
        });
        running.push({ peer, service });
        log.info(
          'exposing',
          { id: s.name, to: s.to, access, encrypted: Boolean(key && encrypt) },
          `exposing ${s.to.host}:${s.to.port} as "${s.name}" (${access}; ${mode})`,
        );
      }
    } catch (err) {
      await stop();
      throw err;
    }
    log.info('ready', { services: services.map((s) => s.name) }, `${services.length} service${services.length > 1 ? 's' : ''} exposed — Ctrl-C to stop`);
    const stopped = Promise.race(running.map((r) => new Promise<Error | undefined>((resolve) => r.peer.once('close', resolve))));
    const outcome = await Promise.race([untilSignal(), stopped]);
    await stop();
    if (outcome instanceof Error) throw outcome;
    log.info('stopped', { signal: outcome }, `stopped (${outcome ?? 'peer closed'})`);
    return EXIT.OK;
  },
};

/**
 * The services asked for: `--id`/`--to`, `--service` items and the config file's `[[service]]` tables. A name
 * given twice in one place is an error; one given on the command line replaces the file's.
 */
export function servicesOf(s: CommandSettings): ServiceSpec[] {
  const byName = new Map<string, ServiceSpec & { where: string; fromFile: boolean }>();
  const add = (name: string, to: HostPort, where: string, fromFile: boolean): void => {
    const seen = byName.get(name);
    if (seen && seen.fromFile === fromFile) throw new CliError(`${where}: duplicate service name "${name}" (also in ${seen.where})`, EXIT.USAGE);
    byName.set(name, { name, to, where, fromFile });
  };
  for (const entry of s.tables.service ?? []) add(...tableService(entry), true);
  const id = s.values.id as string | undefined;
  const to = s.values.to as string | undefined;
  if (id !== undefined || to !== undefined) {
    if (id === undefined) throw new CliError(`${s.where('to')} needs --id NAME`, EXIT.USAGE);
    if (to === undefined) throw new CliError(`${s.where('id')} needs --to HOST:PORT (or use --service NAME=HOST:PORT)`, EXIT.USAGE);
    add(checkId(id, s.where('id')), parseHostPort(to, s.where('to')), s.where('id'), !s.where('id').startsWith('--'));
  }
  for (const item of (s.values.service as string[] | undefined) ?? []) {
    const [name, target] = splitPair(item, '--service', 'NAME=HOST:PORT');
    add(checkId(name, '--service'), parseHostPort(target, `--service ${name}`), `--service ${item}`, false);
  }
  if (byName.size === 0) throw new CliError('nothing to expose: give --id NAME --to HOST:PORT, or --service NAME=HOST:PORT', EXIT.USAGE);
  return [...byName.values()].map(({ name, to: target }) => ({ name, to: target }));
}

function tableService(entry: Settings): [string, HostPort, string] {
  const name = entry.values.name as string | undefined;
  if (name === undefined) throw new CliError(`${entry.where('name')}: missing (every [[service]] needs a name and a to)`, EXIT.USAGE);
  return [checkId(name, entry.where('name')), parseHostPort(entry.values.to as string | undefined, entry.where('to')), entry.where('name')];
}
