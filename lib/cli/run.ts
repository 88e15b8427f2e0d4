/**
 * Command dispatch: picks the command, runs it, and turns every failure into one clear line and an exit code
 * (see errors.ts). Commands that run until stopped resolve when SIGINT/SIGTERM has closed them cleanly.
 */
import { createRequire } from 'node:module';
import type { CommandEntry } from './command.js';
import { CliError, EXIT, toCliError } from './errors.js';

/** Every subcommand, loaded only when it runs (so `--help` and a usage error start fast). */
const COMMANDS: Record<string, CommandEntry> = {
  serve: { summary: 'run the rendezvous + relay server', load: async () => (await import('./serve.js')).serve },
  expose: { summary: 'offer local TCP services to peers under names', load: async () => (await import('./expose.js')).expose },
  connect: {
    summary: "listen locally and carry each connection to a peer's exposed service",
    load: async () => (await import('./connect.js')).connect,
  },
  'nat-check': { summary: "report this network's NAT mapping behaviour", load: async () => (await import('./nat-check.js')).natCheck },
};

export const USAGE = `tcp-punch — direct TCP connections between peers behind NATs

Usage: tcp-punch <command> [flags]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
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
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    process.stderr.write(`tcp-punch: unknown command "${name}"\n\n${USAGE}\n`);
    return EXIT.USAGE;
  }
  const command = await entry.load();
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
