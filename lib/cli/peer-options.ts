/**
 * Flags shared by the commands that run a Peer (expose, connect), and the tunnel log lines they print.
 */
import { Peer } from '../peer/index.js';
import type { TunnelEvent } from '../tunnel/expose.js';
import { SECRET_HELP, SECRET_OPTIONS, parseHostPort, parseProbePorts, readSecret } from './args.js';
import { toCliError } from './errors.js';
import { formatBytes, formatMs, type Logger } from './log.js';

export const PEER_OPTIONS = {
  server: { type: 'string' },
  id: { type: 'string' },
  'probe-ports': { type: 'string' },
  'no-probe': { type: 'boolean' },
  ...SECRET_OPTIONS,
} as const;

export const PEER_HELP = `  --server H:P       the tcp-punch server
  --probe-ports A,B  the server's NAT probe ports (default PORT+1,PORT+2, as \`serve\` opens them): a symmetric
                     NAT found there goes to the relay at once instead of punching in vain
  --no-probe         do not probe the NAT
${SECRET_HELP}`;

/** The natProbe option: the server's probe ports unless --no-probe; none when the default would not fit. */
function natProbeOf(values: { 'probe-ports'?: string; 'no-probe'?: boolean }, serverPort: number): { ports: [number, number] } | false {
  if (values['no-probe']) return false;
  const ports = parseProbePorts(values['probe-ports'], serverPort);
  return ports ? { ports } : false;
}

/** Registers with the server; failures become CLI errors with their exit codes. */
export async function connectPeer(
  values: { server?: string; id?: string; secret?: string; 'secret-file'?: string; 'probe-ports'?: string; 'no-probe'?: boolean },
  id: string,
  log: Logger,
): Promise<Peer> {
  const server = parseHostPort(values.server, '--server');
  const secret = readSecret(values);
  const natProbe = natProbeOf(values, server.port);
  let peer: Peer;
  try {
    peer = await Peer.connect({
      server: `${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port}`,
      id,
      natProbe,
      ...(secret ? { secret } : {}),
    });
  } catch (err) {
    throw toCliError(err, `registering as "${id}" with ${server.host}:${server.port}`);
  }
  log.info('registered', { id, server: `${server.host}:${server.port}` }, `registered as "${id}" with ${server.host}:${server.port}`);
  peer.on('offline', (err) => log.warn('offline', { error: err?.message }, `lost the server${err ? `: ${err.message}` : ''}; reconnecting`));
  peer.on('online', () => log.info('online', {}, 're-registered with the server'));
  peer.on('nat', (result, err) => {
    if (result) log.info('nat', { mapping: result.mapping, nat: result.nat }, `NAT: ${result.verdict}`);
    else log.debug('nat', { error: err?.message }, `NAT probe failed (${err?.message}); punching as usual`);
  });
  peer.on('attempt', (e) => {
    if (e.outcome === 'ok') return;
    log.debug('attempt', { ...e }, `attempt ${e.attempt} to ${e.peerId} (${e.mode ?? '-'}/${e.route ?? '-'}): ${e.outcome}${e.code ? ` ${e.code}` : ''}`);
  });
  return peer;
}

/** One line per tunnel opening, closing or failing. */
export function logTunnelEvent(log: Logger, e: TunnelEvent): void {
  switch (e.type) {
    case 'open':
      log.info('tunnel-open', e, `tunnel open    peer=${e.peerId} path=${e.path} attempts=${e.attempt} connect=${formatMs(e.connectMs)} wait=${formatMs(e.waitMs)}`);
      break;
    case 'close': {
      const r = e.result;
      log.info(
        'tunnel-close',
        { peerId: e.peerId, path: e.path, ...r },
        `tunnel closed  peer=${e.peerId} path=${e.path} sent=${formatBytes(r.bytesAToB)} received=${formatBytes(r.bytesBToA)} duration=${formatMs(r.durationMs)} reason=${r.reason}${r.error ? ` (${r.error})` : ''}`,
      );
      break;
    }
    case 'fail':
      log.warn('tunnel-fail', e, `tunnel failed  peer=${e.peerId} ${e.code}: ${e.message}`);
      break;
    case 'drop':
      log.debug('spare-drop', e, `spare dropped  peer=${e.peerId}: ${e.reason}`);
      break;
    case 'wait':
      log.info('tunnel-wait', e, `tunnel waits   peer=${e.peerId} up to ${formatMs(e.maxWaitMs)}: ${e.reason}`);
      break;
  }
}
