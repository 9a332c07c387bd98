import { parseArgs, UsageError } from '../args.js';
import { configFor, reportConfigError } from './shared.js';
import { createLogger } from '../../logger.js';
import { startSipledger } from '../../app.js';
import type { Command } from './index.js';

export const startCommand: Command = {
  summary: 'start the proxy and registrar',
  help: `Usage: sipledger start [-c FILE] [--log-level LEVEL]

Starts sipledger with the configuration in FILE (YAML; see examples/). Without -c it runs the
embedded quick-start configuration: users alice/alice-secret and bob/bob-secret in domain
sipledger.test, UDP and TCP on 127.0.0.1:5060, the event log in ./data.

The location table is rebuilt from the event log before the SIP sockets open.
Signals: SIGTERM/SIGINT stop gracefully (running transactions finish, the log is flushed,
a snapshot is written, exit 0); SIGHUP reloads in-memory users.

Options:
  -c, --config FILE     configuration file
      --log-level LEVEL override logging.level (fatal, error, warn, info, debug, trace)
`,
  async run(argv) {
    let opts;
    try {
      opts = parseArgs(argv, { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' } }).options;
    } catch (err) {
      if (err instanceof UsageError) {
        process.stderr.write(`sipledger start: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    let config;
    try {
      config = configFor(opts['config'] as string | undefined);
    } catch (err) {
      return reportConfigError(err);
    }
    const logger = createLogger((opts['log-level'] as string | undefined) ?? config.logging.level);
    let app;
    try {
      app = await startSipledger(config, logger);
    } catch (err) {
      logger.fatal({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'sipledger could not start');
      return 1;
    }
    if (!opts['config']) {
      const l = app.transports.listening()[0];
      process.stderr.write(
        `\nsipledger is running (quick start). Register a phone or SIPp against it:\n` +
          `  server/registrar: ${l?.address}:${l?.port}, domain sipledger.test\n` +
          `  user alice, password alice-secret (or bob / bob-secret)\n` +
          `  e.g. sipsak -U -C sip:alice@127.0.0.1:5070 -s sip:alice@sipledger.test -a alice-secret -u alice -H 127.0.0.1 -p ${l?.address}:${l?.port} -vv\n` +
          (app.admin ? `  admin API: ${app.admin.address()}/location\n` : '') +
          `Stop with Ctrl-C.\n\n`,
      );
    }
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping');
      app.stop().then(
        () => {
          logger.info('stopped');
          logger.flush?.();
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'stop failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => app.reload());
    return -1;
  },
};
