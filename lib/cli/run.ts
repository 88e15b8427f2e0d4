/**
 * Command dispatch: picks the command, runs it, and turns every failure into one clear line and an exit code
 * (see errors.ts). Commands that run until stopped resolve when SIGINT/SIGTERM has closed them cleanly.
 */
import { createRequire } from 'node:module';
import { CliError, EXIT, toCliError } from './errors.js';

export interface Command {
  summary: string;
  help: string;
  /** Resolves to the exit code. */
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./serve.js')).serve,
  expose: async () => (await import('./expose.js')).expose,
  connect: async () => (await import('./connect.js')).connect,
  'nat-check': async () => (await import('./nat-check.js')).natCheck,
};

const SUMMARIES: Record<string, string> = {
  serve: 'run the rendezvous + relay server',
  expose: 'offer a local TCP service to peers under a name',
  connect: "listen locally and carry each connection to a peer's exposed service",
  'nat-check': "report this network's NAT mapping behaviour",
};

export const USAGE = `tcp-punch — direct TCP connections between peers behind NATs

Usage: tcp-punch <command> [flags]

Commands:
${Object.entries(SUMMARIES)
  .map(([name, s]) => `  ${name.padEnd(10)} ${s}`)
  .join('\n')}

Run "tcp-punch <command> --help" for a command's flags; "tcp-punch --version" (-V) prints the version.
Exit codes: 0 ok · 1 failure · 2 usage · 3 server unreachable · 4 auth refused · 5 peer unknown/offline/refused · 6 local address unusable`;

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (name === '--version' || name === '-V') {
    const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
    process.stdout.write(`${version}\n`);
    return EXIT.OK;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`tcp-punch: unknown command "${name}"\n\n${USAGE}\n`);
    return EXIT.USAGE;
  }
  const command = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.help}\n`);
    return EXIT.OK;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    const e = err instanceof CliError ? err : toCliError(err, name);
    process.stderr.write(`tcp-punch ${name}: ${e.message}\n`);
    return e.exitCode;
  }
}
