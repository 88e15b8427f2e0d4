/**
 * `tcp-punch serve`: the rendezvous + relay server on one port, the two mapping-probe ports nat-check uses, and
 * optionally Prometheus metrics. The limit flags are a table over the library's own defaults and ranges, so the
 * help shows the defaults as they are.
 */
import { fastOpenServerState } from '../fast-open.js';
import { METRICS_DEFAULT_HOST, createMetricsRegistry, serverMetrics, startMetricsServer } from '../metrics.js';
import { RELAY_RANGES, relayDefaults, type RelayLimits } from '../relay/limits.js';
import type { RelaySessionEnd } from '../relay/relay-service.js';
import { SERVER_DEFAULTS, SERVER_RANGES, startServer, type ServerOptions, type ServerRelayOptions } from '../server/index.js';
import {
  COMMON_OPTIONS, CONFIG_OPTIONS, SECRET_OPTIONS, loggerFrom, parseBytes, parseCount, parseDuration, parsePort, parseProbePorts,
  readSecret, showBytes, showDuration, warnLooseSecretFile,
} from './args.js';
import type { Command } from './command.js';
import { readSettings, type Settings } from './config.js';
import { CliError, EXIT, toCliError } from './errors.js';
import { renderFlags, type FlagSection, type Flags } from './flags.js';
import { formatBytes, formatMs, type Logger } from './log.js';
import { untilSignal } from './signals.js';
import { CLUSTER_ENV, clusterFromFlags, redactRedis } from '../cluster/index.js';
import { readFileSync } from 'node:fs';

export const DEFAULT_PORT = 7770;

type Kind = 'count' | 'bytes' | 'duration';

/** A numeric limit flag and the library option it sets. */
interface Limit<K extends string> {
  key: K;
  kind: Kind;
  arg: string;
  help: string;
}

const SERVER_LIMITS: Record<string, Limit<keyof typeof SERVER_DEFAULTS>> = {
  'max-connections': { key: 'maxConnections', kind: 'count', arg: 'N', help: 'connections at once' },
  'max-connections-per-ip': { key: 'maxConnectionsPerIp', kind: 'count', arg: 'N', help: 'connections at once from one IP' },
  'handshake-timeout': { key: 'handshakeTimeoutMs', kind: 'duration', arg: 'T', help: 'time to authenticate' },
  'idle-timeout': { key: 'idleTimeoutMs', kind: 'duration', arg: 'T', help: 'silence before a peer is dropped' },
  'max-pending-per-peer': { key: 'maxPendingPerPeer', kind: 'count', arg: 'N', help: 'dials one peer may take part in at once' },
};

const RELAY_LIMITS: Record<string, Limit<keyof RelayLimits>> = {
  'relay-max-sessions': { key: 'maxSessions', kind: 'count', arg: 'N', help: 'relayed sessions at once' },
  'relay-max-bytes': { key: 'maxBytesPerSession', kind: 'bytes', arg: 'SIZE', help: 'bytes per session, both ways together, e.g. 512M' },
  'relay-max-duration': { key: 'maxDurationMs', kind: 'duration', arg: 'T', help: 'duration per session, e.g. 30m' },
  'relay-idle-timeout': { key: 'idleTimeoutMs', kind: 'duration', arg: 'T', help: 'time a session may move no byte, e.g. 10m' },
  'relay-sessions-per-peer': { key: 'maxSessionsPerPeer', kind: 'count', arg: 'N', help: 'sessions at once per peer id' },
  'relay-sessions-per-ip': { key: 'maxSessionsPerIp', kind: 'count', arg: 'N', help: 'sessions at once per IP address' },
  'relay-join-timeout': { key: 'joinTimeoutMs', kind: 'duration', arg: 'T', help: 'time the second side has to join' },
};

/** A limit's value in its flag's notation; 0 is "no limit" where 0 disables it. */
function show(kind: Kind, n: number): string {
  if (n === 0) return 'none';
  return kind === 'bytes' ? showBytes(n) : kind === 'duration' ? showDuration(n) : String(n);
}

function limitFlags<K extends string>(table: Record<string, Limit<K>>, defaultText: (l: Limit<K>) => string): Flags {
  const flags: Flags = {};
  for (const [name, l] of Object.entries(table)) {
    const text = defaultText(l);
    flags[name] = { type: 'string', arg: l.arg, help: `${l.help}${l.help.length + text.length > 60 ? '\n' : ' '}(${text})` };
  }
  return flags;
}

const relayDefaultText = (l: Limit<keyof RelayLimits>): string => {
  const [secret, open] = [relayDefaults('secret')[l.key], relayDefaults('open')[l.key]];
  const zero = RELAY_RANGES[l.key][0] === 0 ? '; 0 = none' : '';
  return secret === open ? `default ${show(l.kind, open)}${zero}` : `default ${show(l.kind, open)} open, ${show(l.kind, secret)} with a secret${zero}`;
};

const SECTIONS: FlagSection[] = [
  {
    flags: {
      host: { type: 'string', arg: 'H', help: 'address to listen on (default: all)' },
      port: { type: 'string', arg: 'P', help: `port (default ${DEFAULT_PORT})` },
      ...SECRET_OPTIONS,
      'probe-ports': { type: 'string', arg: 'A,B', help: 'nat-check probe ports (default PORT+1,PORT+2)' },
      'no-probe': { type: 'boolean', help: 'open no probe ports' },
      'metrics-port': { type: 'string', arg: 'M', help: 'serve Prometheus metrics on http://HOST:M/metrics' },
      'metrics-host': { type: 'string', arg: 'H', help: `address for metrics (default ${METRICS_DEFAULT_HOST})` },
      ...CONFIG_OPTIONS,
    },
  },
  { title: 'limits (defaults suit a public server)', flags: limitFlags(SERVER_LIMITS, (l) => `default ${show(l.kind, SERVER_DEFAULTS[l.key])}`) },
  {
    title: 'relay (on the same port; limits are reported to both peers when hit)',
    flags: {
      'no-relay': { type: 'boolean', help: 'run no relay: peers that cannot punch cannot connect' },
      ...limitFlags(RELAY_LIMITS, relayDefaultText),
      'relay-pump': { type: 'string', arg: 'KIND', help: 'auto (default: native where available) | native | js' },
    },
  },
  {
    title: 'cluster (several nodes sharing one Redis, docs/CLUSTER.md)',
    flags: {
      cluster: { type: 'string', arg: 'URL', help: `join the cluster on Redis redis://[:PASSWORD@]HOST:PORT (or set ${CLUSTER_ENV})` },
      'node-id': { type: 'string', arg: 'ID', help: 'this node\'s id, unique in the cluster (default random)' },
      advertise: { type: 'string', arg: 'HOST:PORT', help: 'where peers and nodes reach this node (default the listen address)' },
      'cluster-secret-file': { type: 'string', arg: 'FILE', help: 'open servers: the secret all nodes share (default the server secret)', path: true },
    },
  },
  { flags: COMMON_OPTIONS },
];

const HELP = `Usage: tcp-punch serve [flags]

Runs the rendezvous server (registration, coordination, relay) on one TCP port. With no flags it listens on
all addresses, port ${DEFAULT_PORT}, as an open server (any peer may register a free name). With a secret only
peers holding it may register, and their relayed sessions have no byte or duration cap by default.

${renderFlags(SECTIONS)}`;

export const serve: Command = {
  help: HELP,
  async run(argv) {
    const settings = readSettings(argv, SECTIONS, HELP);
    const { values: v, where } = settings;
    const str = (k: string): string | undefined => v[k] as string | undefined;
    const log = loggerFrom(v);
    const port = parsePort(str('port'), where('port'), DEFAULT_PORT, 0);
    const secret = readSecret(v, where);
    warnLooseSecretFile(log, v, where);
    const options: ServerOptions = {};
    for (const [flag, l] of Object.entries(SERVER_LIMITS)) {
      const n = parseLimit(settings, flag, l.kind, SERVER_RANGES[l.key]);
      if (n !== undefined) options[l.key] = n;
    }
    options.relay = v['no-relay'] ? false : relayOptions(settings);
    const metricsPort = str('metrics-port') === undefined ? undefined : parsePort(str('metrics-port'), where('metrics-port'), 0, 0);
    // The server opens the probe listeners itself (PORT+1, PORT+2 unless told otherwise) and announces them.
    const probePortsText = str('probe-ports');
    const natProbe = v['no-probe']
      ? false
      : probePortsText !== undefined
        ? { ports: parseProbePorts(probePortsText, port, 0, where('probe-ports'))! }
        : undefined;
    if (natProbe === undefined && port !== 0 && port + 2 > 65535)
      throw new CliError('the default probe ports (PORT+1, PORT+2) exceed 65535: pass --probe-ports or --no-probe', EXIT.USAGE);
    const cluster = clusterOption(settings, secret);
    if (cluster) {
      options.cluster = {
        ...cluster,
        log: (level, message) => (level === 'warn' ? log.warn('cluster-log', {}, message) : log.info('cluster-log', {}, message)),
      };
    }
    let server;
    try {
      server = await startServer({ host: str('host'), port, ...(secret ? { secret } : {}), ...options, ...(natProbe !== undefined ? { natProbe } : {}) });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (cluster && typeof code === 'string' && code.startsWith('ERR_CLUSTER_'))
        throw toCliError(err, `joining the cluster at ${redactRedis(cluster.redis)}`);
      // e.g. listening on every address without --advertise
      if (cluster && typeof code === 'string' && code.startsWith('ERR_INVALID_ARG'))
        throw new CliError(`${(err as Error).message.replace('options.cluster.advertise', '--advertise')}`, EXIT.USAGE);
      throw toCliError(err, `listening on ${str('host') ?? '*'}:${port} (nat-check probes: --probe-ports or --no-probe)`);
    }
    if (cluster) {
      const link = server.cluster!;
      log.info(
        'cluster',
        { nodeId: link.cluster.nodeId, redis: redactRedis(cluster.redis), advertise: link.cluster.advertise },
        `cluster node ${link.cluster.nodeId} via ${redactRedis(cluster.redis)}, advertising ${link.cluster.advertise}`,
      );
    }
    const closers: (() => Promise<void>)[] = [() => server.close()];
    const shutdown = async (): Promise<void> => {
      for (const close of closers.reverse()) await close().catch(() => {});
    };
    try {
      const addr = server.address();
      const probeNote = server.probePorts ? `nat-check probes on ports ${server.probePorts.join(', ')}` : 'nat-check probes off';
      server.relay?.on('session-end', (e) => logRelayEnd(log, e));
      if (metricsPort !== undefined) {
        const registry = createMetricsRegistry();
        serverMetrics(registry, server);
        const metrics = await startMetricsServer(registry, metricsPort, str('metrics-host')).catch((err: unknown) => {
          throw toCliError(err, `opening the metrics port ${metricsPort}`);
        });
        closers.push(() => metrics.close());
        const m = metrics.address();
        log.info('metrics', { address: m.address, port: m.port }, `metrics on http://${m.address}:${m.port}/metrics`);
      }
      const shown = addr.address === '::' || addr.address === '0.0.0.0' ? 'all addresses' : addr.address;
      const relay = server.relay?.limits;
      // Whether relay joins can ride in their SYN (lib/fast-open.ts): the kernel's setting, not ours to change.
      const fastOpen = fastOpenServerState();
      const fastOpenNote = fastOpen === 'off' ? '; relay joins take an extra round trip (sysctl -w net.ipv4.tcp_fastopen=3 saves it)' : '';
      log.info(
        'listening',
        { address: addr.address, port: addr.port, auth: secret ? 'secret' : 'open', relay: relay ?? false, fastOpen },
        `tcp-punch server listening on ${shown}, port ${addr.port} (${secret ? 'shared secret required' : 'open: no secret'}); ` +
          `${relay ? `relay on (${describeRelayLimits(relay)})${fastOpenNote}` : 'relay off'}; ${probeNote}\n` +
          `  peers: tcp-punch expose --server <this-host>:${addr.port} --id NAME --to HOST:PORT${secret ? ' --secret-file FILE' : ''}\n` +
          `         tcp-punch connect --server <this-host>:${addr.port} --peer NAME --listen 127.0.0.1:PORT${secret ? ' --secret-file FILE' : ''}`,
      );
    } catch (err) {
      await shutdown();
      throw err;
    }
    const signal = await untilSignal();
    log.info('stopping', { signal }, `${signal}: closing (finishing dials in flight)`);
    await shutdown();
    log.info('stopped', {}, 'stopped');
    return EXIT.OK;
  },
};

/** The `cluster` option from --cluster (or TCP_PUNCH_CLUSTER), --node-id, --advertise, --cluster-secret-file. */
function clusterOption(s: Settings, secret: string | undefined): (ServerOptions['cluster'] & { redis: string }) | undefined {
  const str = (k: string): string | undefined => s.values[k] as string | undefined;
  let cluster;
  try {
    cluster = clusterFromFlags({ cluster: str('cluster'), nodeId: str('node-id'), advertise: str('advertise') }, process.env);
  } catch (err) {
    throw new CliError((err as Error).message, EXIT.USAGE);
  }
  const file = str('cluster-secret-file');
  if (!cluster) {
    if (file !== undefined) throw new CliError(`${s.where('cluster-secret-file')} needs --cluster (or ${CLUSTER_ENV})`, EXIT.USAGE);
    return undefined;
  }
  let clusterSecret: string | undefined;
  if (file !== undefined) {
    try {
      clusterSecret = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new CliError(`${s.where('cluster-secret-file')}: cannot read ${file}: ${(err as Error).message}`, EXIT.USAGE);
    }
    if (clusterSecret.length === 0) throw new CliError(`${s.where('cluster-secret-file')}: the secret is empty`, EXIT.USAGE);
  }
  if (!secret && !clusterSecret)
    throw new CliError('cluster mode needs a secret all nodes share: --secret-file, or --cluster-secret-file for an open server', EXIT.USAGE);
  return { ...cluster, ...(clusterSecret ? { secret: clusterSecret } : {}) };
}

function parseLimit(s: Settings, flag: string, kind: Kind, [min, max]: readonly [number, number]): number | undefined {
  const value = s.values[flag] as string | undefined;
  if (kind === 'count') return parseCount(value, s.where(flag), { min, max });
  if (kind === 'bytes') return parseBytes(value, s.where(flag), { max });
  return parseDuration(value, s.where(flag), { min, max });
}

function relayOptions(s: Settings): ServerRelayOptions {
  const limits: Partial<RelayLimits> = {};
  for (const [flag, l] of Object.entries(RELAY_LIMITS)) {
    const n = parseLimit(s, flag, l.kind, RELAY_RANGES[l.key]);
    if (n !== undefined) limits[l.key] = n;
  }
  const pump = (s.values['relay-pump'] as string | undefined) ?? 'auto';
  if (pump !== 'auto' && pump !== 'native' && pump !== 'js') {
    throw new CliError(`${s.where('relay-pump')} must be auto, native or js, got "${pump}"`, EXIT.USAGE);
  }
  return { limits, pump };
}

/** "per session: no byte cap, no duration cap, idle limit 5m": the per-session limits in force. */
export function describeRelayLimits(l: RelayLimits): string {
  const bytes = l.maxBytesPerSession ? `byte cap ${showBytes(l.maxBytesPerSession)}` : 'no byte cap';
  const duration = l.maxDurationMs ? `duration cap ${showDuration(l.maxDurationMs)}` : 'no duration cap';
  const idle = l.idleTimeoutMs ? `idle limit ${showDuration(l.idleTimeoutMs)}` : 'no idle limit';
  return `per session: ${bytes}, ${duration}, ${idle}`;
}

/** One line per relayed session end: both ids, bytes each way, duration, reason. */
function logRelayEnd(log: Logger, e: RelaySessionEnd): void {
  log.info(
    'relay-end',
    { ...e },
    `relay ended    a=${e.a} b=${e.b} a→b=${formatBytes(e.bytesAToB)} b→a=${formatBytes(e.bytesBToA)} ` +
      `duration=${formatMs(e.durationMs)} reason=${e.reason}${e.code ? ` (${e.code})` : ''}`,
  );
}
