#!/usr/bin/env node
/**
 * The `sipledger` command. Each subcommand lives in its own module under src/cli/commands/ and is
 * registered in the table below; `sipledger help COMMAND` prints its help.
 */
import { commands, type Command } from './commands/index.js';

const VERSION = '0.1.0';

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const list = Object.entries(commands)
    .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
    .join('\n');
  return `sipledger ${VERSION}: an event-sourced SIP proxy and registrar

Usage: sipledger <command> [options]

Commands:
${list}

Every command takes -c FILE (the configuration; without it, the embedded quick-start
configuration with its data in ./data). Run 'sipledger <command> --help' (or
'sipledger help <command>') for a command's options and examples.

Examples:
  sipledger start                                  quick start on 127.0.0.1:5060
  sipledger config check /etc/sipledger/sipledger.yaml
  sipledger users add carol@example.com -c site.yaml < password.txt
  sipledger location show alice@example.com --at 2h -c site.yaml
  sipledger audit failed --since 24h -c site.yaml

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
Documentation: README.md, docs/operations.md, docs/configuration.md, docs/cli.md.
`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && commands[topic]) {
      process.stdout.write(commands[topic].help);
      return 0;
    }
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const cmd: Command | undefined = commands[name];
  if (!cmd) {
    process.stderr.write(`sipledger: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.help);
    return 0;
  }
  return cmd.run(rest);
}

// `sipledger log inspect | head`: a reader that goes away is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    // `start` keeps the process alive itself; others end here.
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sipledger: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
