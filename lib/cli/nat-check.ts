/**
 * `tcp-punch nat-check --server H:P`: measures the local NAT's TCP mapping behaviour against the server's two
 * probe ports (by default the server port + 1 and + 2, which `tcp-punch serve` opens).
 */
import { checkNat } from '../nat-check/check.js';
import { COMMON_OPTIONS, loggerFrom, parse, parseCount, parseHostPort, parseProbePorts } from './args.js';
import { CliError, EXIT, toCliError } from './errors.js';
import { allFlags, renderFlags, type FlagSection } from './flags.js';
import type { Command } from './command.js';

const DEFAULT_ROUNDS = 3;

const SECTIONS: FlagSection[] = [
  {
    flags: {
      server: { type: 'string', arg: 'H:P', help: 'the tcp-punch server' },
      'probe-ports': { type: 'string', arg: 'A,B', help: "the server's probe ports (default PORT+1,PORT+2)" },
      rounds: { type: 'string', arg: 'N', help: `local ports to test (default ${DEFAULT_ROUNDS})` },
    },
  },
  { flags: COMMON_OPTIONS },
];

const HELP = `Usage: tcp-punch nat-check --server HOST:PORT [flags]

Reports whether this network's NAT keeps one public mapping per local port (endpoint-independent, what TCP hole
punching needs) or picks a new one per destination (symmetric), and whether it preserves port numbers.

${renderFlags(SECTIONS)}`;

export const natCheck: Command = {
  help: HELP,
  async run(argv) {
    const v = parse(argv, allFlags(SECTIONS), HELP) as { server?: string; 'probe-ports'?: string; rounds?: string; json?: boolean };
    const log = loggerFrom(v);
    const server = parseHostPort(v.server, '--server');
    const probePorts = parseProbePorts(v['probe-ports'], server.port);
    if (!probePorts) throw new CliError('--probe-ports: the default probe ports exceed 65535; pass --probe-ports', EXIT.USAGE);
    const rounds = parseCount(v.rounds, '--rounds', { min: 1, max: 20 }) ?? DEFAULT_ROUNDS;
    let result;
    try {
      result = await checkNat({ host: server.host, probePorts, rounds });
    } catch (err) {
      throw toCliError(err, `probing ${server.host}:${probePorts.join(',')}`);
    }
    if (log.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      const lines = [
        `NAT:             ${result.nat === 'none' ? 'none seen' : `present (public ${result.publicAddresses.join(', ')})`}`,
        `mapping:         ${result.mapping}`,
        `port preserving: ${result.portPreserving ? 'yes' : 'no'}`,
        `filtering:       ${result.filtering}`,
        ...result.rounds.map(
          (r, i) => `  round ${i + 1}: local ${r.local.host}:${r.local.port} → seen as ${r.observed.map((o) => `${o.host}:${o.port}`).join(' and ')}`,
        ),
        `verdict:         ${result.verdict}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    return EXIT.OK;
  },
};
