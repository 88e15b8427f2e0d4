/**
 * `tcp-punch serve`: the rendezvous + relay server on one port, the two mapping-probe ports nat-check uses, and
 * optionally Prometheus metrics.
 */
import { createMetricsRegistry, startMetricsServer } from '../metrics.js';
import type { RelayLimits } from '../relay/limits.js';
import { startServer, type ServerOptions, type ServerRelayOptions } from '../server/index.js';
import { COMMON_HELP, SECRET_HELP, SECRET_OPTIONS, loggerFrom, parse, parseBytes, parseCount, parseDuration, parsePort, parseProbePorts, readSecret } from './args.js';
import { CliError, EXIT, toCliError } from './errors.js';
import type { Command } from './run.js';
import { untilSignal } from './signals.js';

export const DEFAULT_PORT = 7770;

const HELP = `Usage: tcp-punch serve [flags]

Runs the rendezvous server (registration, coordination, relay) on one TCP port. With no flags it listens on
all addresses, port ${DEFAULT_PORT}, as an open server (any peer may register a free name).

  --host H                    address to listen on (default: all)
  --port P                    port (default ${DEFAULT_PORT})
${SECRET_HELP}
  --probe-ports A,B           nat-check probe ports (default PORT+1,PORT+2); --no-probe to disable
  --no-probe
  --metrics-port M            serve Prometheus metrics on http://HOST:M/metrics
  --metrics-host H            address for metrics (default 127.0.0.1)
 limits (defaults suit a public server):
  --max-connections N         connections at once (default 10000)
  --max-connections-per-ip N  connections at once from one IP (default 256)
  --handshake-timeout T       time to authenticate (default 5s)
  --idle-timeout T            silence before a peer is dropped (default 60s)
  --max-pending-per-peer N    dials one peer may take part in at once (default 64)
 relay (on the same port; limits are reported to both peers when hit):
  --no-relay                  run no relay: peers that cannot punch cannot connect
  --relay-max-sessions N      relayed sessions at once (default 4096)
  --relay-max-bytes SIZE      bytes per session, both ways together, e.g. 512M; 0 = no limit (default 128M)
  --relay-max-duration T      duration per session, e.g. 30m; 0 = no limit (default 15m)
  --relay-idle-timeout T      time a session may move no byte, e.g. 10m; 0 = no limit (default 5m)
  --relay-sessions-per-peer N sessions at once per peer id (default 8)
  --relay-sessions-per-ip N   sessions at once per IP address (default 32)
  --relay-join-timeout T      time the second side has to join (default 30s)
  --relay-pump KIND           auto (default: native where available) | native | js
${COMMON_HELP}`;

const OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  ...SECRET_OPTIONS,
  'probe-ports': { type: 'string' },
  'no-probe': { type: 'boolean' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'max-connections': { type: 'string' },
  'max-connections-per-ip': { type: 'string' },
  'handshake-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'max-pending-per-peer': { type: 'string' },
  'no-relay': { type: 'boolean' },
  'relay-max-sessions': { type: 'string' },
  'relay-max-bytes': { type: 'string' },
  'relay-max-duration': { type: 'string' },
  'relay-idle-timeout': { type: 'string' },
  'relay-sessions-per-peer': { type: 'string' },
  'relay-sessions-per-ip': { type: 'string' },
  'relay-join-timeout': { type: 'string' },
  'relay-pump': { type: 'string' },
} as const;

export const serve: Command = {
  summary: 'run the rendezvous + relay server',
  help: HELP,
  async run(argv) {
    const v = parse(argv, OPTIONS, HELP);
    const log = loggerFrom(v);
    const port = parsePort(v.port, '--port', DEFAULT_PORT, 0);
    const secret = readSecret(v);
    const limits: ServerOptions = {};
    const set = <K extends keyof ServerOptions>(key: K, value: ServerOptions[K] | undefined): void => {
      if (value !== undefined) limits[key] = value;
    };
    set('maxConnections', parseCount(v['max-connections'], '--max-connections', { min: 1 }));
    set('maxConnectionsPerIp', parseCount(v['max-connections-per-ip'], '--max-connections-per-ip', { min: 1 }));
    set('handshakeTimeoutMs', parseDuration(v['handshake-timeout'], '--handshake-timeout', { max: 600_000 }));
    set('idleTimeoutMs', parseDuration(v['idle-timeout'], '--idle-timeout'));
    set('maxPendingPerPeer', parseCount(v['max-pending-per-peer'], '--max-pending-per-peer', { min: 1, max: 65535 }));
    limits.relay = v['no-relay'] ? false : relayOptions(v);
    const metricsPort = v['metrics-port'] === undefined ? undefined : parsePort(v['metrics-port'], '--metrics-port', 0, 0);

    // The server opens the probe listeners itself (PORT+1, PORT+2 unless told otherwise) and announces them.
    const natProbe = v['no-probe'] ? false : v['probe-ports'] !== undefined ? { ports: parseProbePorts(v['probe-ports'], port, 0)! } : undefined;
    if (natProbe === undefined && port !== 0 && port + 2 > 65535)
      throw new CliError('the default probe ports (PORT+1, PORT+2) exceed 65535: pass --probe-ports or --no-probe', EXIT.USAGE);
    let server;
    try {
      server = await startServer({ host: v.host, port, ...(secret ? { secret } : {}), ...limits, ...(natProbe !== undefined ? { natProbe } : {}) });
    } catch (err) {
      throw toCliError(err, `listening on ${v.host ?? '*'}:${port} (nat-check probes: --probe-ports or --no-probe)`);
    }
    const closers: (() => Promise<void>)[] = [() => server.close()];
    const shutdown = async (): Promise<void> => {
      for (const close of closers.reverse()) await close().catch(() => {});
    };
    try {
      const addr = server.address();
      const probeNote = server.probePorts ? `nat-check probes on ports ${server.probePorts.join(', ')}` : 'nat-check probes off';
      if (metricsPort !== undefined) {
        const relay = server.relay;
        let relayBytes = 0;
        relay?.on('session-end', (e) => (relayBytes += e.bytesAToB + e.bytesBToA));
        const registry = createMetricsRegistry({
          server: () => server.stats(),
          ...(relay && {
            relay: () => {
              const r = relay.stats();
              return { active: r.active, total: r.started, bytes: relayBytes, ended: r.ended, rejected: r.rejected };
            },
          }),
        });
        const metrics = await startMetricsServer(registry, metricsPort, v['metrics-host'] ?? '127.0.0.1').catch((err: unknown) => {
          throw toCliError(err, `opening the metrics port ${metricsPort}`);
        });
        closers.push(() => metrics.close());
        const m = metrics.address();
        log.info('metrics', { address: m.address, port: m.port }, `metrics on http://${m.address}:${m.port}/metrics`);
      }
      const shown = addr.address === '::' || addr.address === '0.0.0.0' ? 'all addresses' : addr.address;
      log.info(
        'listening',
        { address: addr.address, port: addr.port, auth: secret ? 'secret' : 'open' },
        `tcp-punch server listening on ${shown}, port ${addr.port} (${secret ? 'shared secret required' : 'open: no secret'}); ` +
          `relay ${server.relay ? 'on' : 'off'}; ${probeNote}\n` +
          `  peers: tcp-punch expose --server <this-host>:${addr.port} --id NAME --to HOST:PORT${secret ? ' --secret ...' : ''}\n` +
          `         tcp-punch connect --server <this-host>:${addr.port} --peer NAME --listen 127.0.0.1:PORT${secret ? ' --secret ...' : ''}`,
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

function relayOptions(v: Record<string, string | boolean | undefined>): ServerRelayOptions {
  const str = (k: string): string | undefined => v[k] as string | undefined;
  const limits: Partial<RelayLimits> = {};
  const put = (key: keyof RelayLimits, value: number | undefined): void => {
    if (value !== undefined) limits[key] = value;
  };
  put('maxSessions', parseCount(str('relay-max-sessions'), '--relay-max-sessions', { min: 1, max: 1_000_000 }));
  put('maxBytesPerSession', parseBytes(str('relay-max-bytes'), '--relay-max-bytes'));
  put('maxDurationMs', parseDuration(str('relay-max-duration'), '--relay-max-duration', { min: 0, max: 2 ** 31 - 1 }));
  put('idleTimeoutMs', parseDuration(str('relay-idle-timeout'), '--relay-idle-timeout', { min: 0, max: 2 ** 31 - 1 }));
  put('maxSessionsPerPeer', parseCount(str('relay-sessions-per-peer'), '--relay-sessions-per-peer', { min: 1, max: 1_000_000 }));
  put('maxSessionsPerIp', parseCount(str('relay-sessions-per-ip'), '--relay-sessions-per-ip', { min: 1, max: 1_000_000 }));
  put('joinTimeoutMs', parseDuration(str('relay-join-timeout'), '--relay-join-timeout', { max: 2 ** 31 - 1 }));
  const pump = str('relay-pump') ?? 'auto';
  if (pump !== 'auto' && pump !== 'native' && pump !== 'js') {
    throw new CliError(`--relay-pump must be auto, native or js, got "${pump}"`, EXIT.USAGE);
  }
  return { limits, pump };
}

