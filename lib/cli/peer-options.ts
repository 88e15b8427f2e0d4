/**
 * What the commands that run a Peer (expose, connect) share: their flags, registering with the server, their
 * metrics endpoint, the `NAME=HOST:PORT`-style list flags, and the tunnel log lines they print.
 */
import { formatEndpoint } from '../endpoint.js';
import { METRICS_DEFAULT_HOST, createMetricsRegistry, startMetricsServer, tunnelMetrics, type TunnelMetrics } from '../metrics.js';
import { Peer } from '../peer/index.js';
import { PEER_ID_PATTERN } from '../protocol/messages.js';
import type { TunnelEvent } from '../tunnel/expose.js';
import { SECRET_OPTIONS, parseHostPort, parsePort, parseProbePorts, readSecret, warnLooseSecretFile, type HostPort } from './args.js';
import type { Settings } from './config.js';
import { CliError, EXIT, toCliError } from './errors.js';
import type { Flags } from './flags.js';
import { formatBytes, formatMs, type Logger } from './log.js';

export const PEER_OPTIONS = {
  server: { type: 'string', arg: 'H:P[,H:P...]', help: 'the tcp-punch server, or the nodes of a cluster (tried in turn)' },
  'dual-stack-server': {
    type: 'string',
    arg: 'H:P',
    help: 'dual-stack: the same server in the other IP family (e.g. [2001:db8::2]:7000); dials with\ndual-stack peers try IPv6 first',
  },
  'probe-ports': {
    type: 'string',
    arg: 'A,B',
    help: 'NAT probe ports (default: those the server announces): a symmetric NAT found there goes to\nthe relay at once instead of punching in vain',
  },
  'no-probe': { type: 'boolean', help: 'do not probe the NAT' },
  ...SECRET_OPTIONS,
  'metrics-port': { type: 'string', arg: 'M', help: 'serve Prometheus metrics of the tunnels on http://HOST:M/metrics' },
  'metrics-host': { type: 'string', arg: 'H', help: `address for metrics (default ${METRICS_DEFAULT_HOST})` },
} as const satisfies Flags;

/** Checks a peer id (a service name) where `where` names its setting. */
export function checkId(id: string, where: string): string {
  if (!PEER_ID_PATTERN.test(id)) throw new CliError(`${where}: "${id}" is not a name: 1-64 printable ASCII characters, no spaces`, EXIT.USAGE);
  return id;
}

/** The natProbe option: off with --no-probe, explicit ports with --probe-ports, else those the server announces. */
function natProbeOf(s: Settings, serverPort: number): { ports: [number, number] } | false | undefined {
  if (s.values['no-probe']) return false;
  const text = s.values['probe-ports'] as string | undefined;
  if (text === undefined) return undefined;
  const ports = parseProbePorts(text, serverPort, 1, s.where('probe-ports'));
  return ports ? { ports } : false;
}

/** What registering needs, checked before anything connects. */
export interface PeerSettings {
  /** The first server of the list. */
  server: HostPort;
  /** Every server given (`--server a:7770,b:7770`), in order. */
  servers: HostPort[];
  /** --dual-stack-server: the same server in the other family. */
  dualStack: HostPort | undefined;
  secret: string | undefined;
  natProbe: { ports: [number, number] } | false | undefined;
}

/** Reads the server, secret and probe settings; usage errors name the flag or config key. */
export function peerSettings(s: Settings, log: Logger): PeerSettings {
  const text = s.values.server as string | undefined;
  const servers = (text === undefined ? [undefined] : text.split(',').map((t) => t.trim())).map((t) => parseHostPort(t, s.where('server')));
  const server = servers[0]!;
  const secret = readSecret(s.values, s.where);
  warnLooseSecretFile(log, s.values, s.where);
  const v6 = s.values['dual-stack-server'] as string | undefined;
  const dualStack = v6 === undefined ? undefined : parseHostPort(v6, s.where('dual-stack-server'));
  return { server, servers, dualStack, secret, natProbe: natProbeOf(s, server.port) };
}

/** Registers `id` with the server; failures become CLI errors with their exit codes. */
export async function connectPeer(p: PeerSettings, id: string, log: Logger): Promise<Peer> {
  const { servers, dualStack, secret, natProbe } = p;
  const list = servers.map(formatEndpoint);
  let peer: Peer;
  try {
    peer = await Peer.connect({
      server: list.length === 1 ? list[0]! : list,
      ...(dualStack ? { dualStackServer: formatEndpoint(dualStack) } : {}),
      id,
      ...(natProbe !== undefined ? { natProbe } : {}),
      ...(secret ? { secret } : {}),
    });
  } catch (err) {
    throw toCliError(err, `registering as "${id}" with ${list.join(', ')}`);
  }
  const at = (): string => (peer.server ? formatEndpoint(peer.server) : list[0]!);
  log.info('registered', { id, server: at() }, `registered as "${id}" with ${at()}`);
  peer.on('offline', (err) => log.warn('offline', { id, error: err?.message }, `"${id}" lost the server${err ? `: ${err.message}` : ''}; reconnecting`));
  peer.on('online', () => log.info('online', { id, server: at() }, `"${id}" re-registered with the server ${at()}`));
  peer.on('nat', (result, err) => {
    if (result) log.info('nat', { mapping: result.mapping, nat: result.nat }, `NAT: ${result.verdict}`);
    else log.debug('nat', { error: err?.message }, `NAT probe failed (${err?.message}); punching as usual`);
  });
  peer.on('family', (r, err) => {
    if (r) log.info('family', { ...r }, `registered IPv${r.family} too, from ${r.address}`);
    else log.warn('family', { error: err?.message }, `second IP family not registered (${err?.message}); dialling in one family`);
  });
  peer.on('attempt', (e) => {
    if (e.outcome === 'ok') return;
    log.debug('attempt', { ...e }, `attempt ${e.attempt} to ${e.peerId} (${e.mode ?? '-'}/${e.route ?? '-'}): ${e.outcome}${e.code ? ` ${e.code}` : ''}`);
  });
  return peer;
}

/** A running metrics endpoint of a tunnel agent. */
export interface AgentMetrics extends TunnelMetrics {
  close(): Promise<void>;
}

/** The metrics port's value, checked (before anything starts); undefined without `--metrics-port`. */
export function metricsSettings(s: Settings): { port: number; host: string | undefined } | undefined {
  const text = s.values['metrics-port'] as string | undefined;
  if (text === undefined) return undefined;
  return { port: parsePort(text, s.where('metrics-port'), 0, 0), host: s.values['metrics-host'] as string | undefined };
}

/** Starts the tunnel metrics endpoint asked for; one that cannot listen is a CLI error. */
export async function startAgentMetrics(m: { port: number; host: string | undefined }, log: Logger): Promise<AgentMetrics> {
  const registry = createMetricsRegistry();
  const metrics = tunnelMetrics(registry);
  const server = await startMetricsServer(registry, m.port, m.host).catch((err: unknown) => {
    throw toCliError(err, `opening the metrics port ${m.port}`);
  });
  const a = server.address();
  log.info('metrics', { address: a.address, port: a.port }, `metrics on http://${a.address}:${a.port}/metrics`);
  return { onEvent: metrics.onEvent, close: () => server.close() };
}

/**
 * Splits a `KEY=VALUE` list item (`--service web=127.0.0.1:80`, `--map 8080=web`) at its first `=`.
 * `what` describes the expected form for the message.
 */
export function splitPair(item: string, where: string, what: string): [string, string] {
  const i = item.indexOf('=');
  if (i <= 0 || i === item.length - 1) throw new CliError(`${where}: expected ${what}, got "${item}"`, EXIT.USAGE);
  return [item.slice(0, i), item.slice(i + 1)];
}

/** One line per tunnel opening, closing or failing; `service` names the tunnel's service when there are several. */
export function logTunnelEvent(log: Logger, e: TunnelEvent, service?: string): void {
  const tag = service === undefined ? '' : ` service=${service}`;
  const extra = service === undefined ? {} : { service };
  switch (e.type) {
    case 'open':
      log.info('tunnel-open', { ...e, ...extra }, `tunnel open   ${tag} peer=${e.peerId} path=${e.path} over=IPv${e.family} attempts=${e.attempt} connect=${formatMs(e.connectMs)} wait=${formatMs(e.waitMs)}`);
      break;
    case 'close': {
      const r = e.result;
      log.info(
        'tunnel-close',
        { peerId: e.peerId, path: e.path, ...r, ...extra },
        `tunnel closed ${tag} peer=${e.peerId} path=${e.path} sent=${formatBytes(r.bytesAToB)} received=${formatBytes(r.bytesBToA)} duration=${formatMs(r.durationMs)} reason=${r.reason}${r.error ? ` (${r.error})` : ''}`,
      );
      break;
    }
    case 'fail':
      log.warn('tunnel-fail', { ...e, ...extra }, `tunnel failed ${tag} peer=${e.peerId} ${e.code}: ${e.message}`);
      break;
    case 'drop':
      log.debug('spare-drop', e, `spare dropped  peer=${e.peerId}: ${e.reason}`);
      break;
    case 'wait':
      log.info('tunnel-wait', e, `tunnel waits   peer=${e.peerId} up to ${formatMs(e.maxWaitMs)}: ${e.reason}`);
      break;
  }
}
