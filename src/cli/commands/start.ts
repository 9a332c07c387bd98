import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, UsageError } from '../args.js';
import { packageRoot } from '../../config/config.js';
import { checkOperational, configFor, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, reportConfigError } from './shared.js';
import { createLogger } from '../../logger.js';
import { startSipledger, type Sipledger } from '../../app.js';
import type { SipledgerConfig } from '../../config/config.js';
import type { Command } from './index.js';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export const startCommand: Command = {
  summary: 'start the proxy and registrar',
  help: `Usage: sipledger start [-c FILE] [--log-level LEVEL] [--sip-port PORT] [--admin-port PORT]

Starts sipledger with the configuration in FILE (YAML; see examples/ and docs/configuration.md).
Without -c it runs the embedded quick-start configuration: users alice/alice-secret and
bob/bob-secret in domain sipledger.test, UDP and TCP on 127.0.0.1:5060, the event log in
./data/log, the admin API on http://127.0.0.1:8080.

The configuration is validated first; a problem is reported with its key path and sipledger
exits with code 2 before any socket opens. Then the location table and the audit trail are
rebuilt from the event log (from the last snapshot on), and only then do the SIP sockets open.

Logs are JSON lines (pino) on standard output. Secrets (passwords, HA1, Authorization headers,
RADIUS secrets, the admin token) are never logged.

Signals:
  SIGTERM, SIGINT   stop: new requests get 503, running transactions finish (at most 5 s),
                    the log is flushed, a snapshot is written; exit code 0
  SIGHUP            reload the users of memory backends (their usersFile); a file that does not
                    load leaves the previous users in place, with an error in the log

Options:
  -c, --config FILE     configuration file
      --log-level LEVEL override logging.level (${LEVELS.join(', ')})
      --sip-port PORT   override the port of every SIP listener (e.g. when 5060 is taken)
      --admin-port PORT override admin.port

Exit codes: 0 stopped by a signal after a clean shutdown, 1 could not start (a port in use, the
log held by another process, a backend that cannot be set up) or the shutdown failed,
2 usage or configuration error.
`,
  async run(argv) {
    let opts;
    let config: SipledgerConfig;
    try {
      opts = parseArgs(argv, {
        config: { type: 'string', short: 'c' },
        'log-level': { type: 'string' },
        'sip-port': { type: 'string' },
        'admin-port': { type: 'string' },
      }).options;
      const level = opts['log-level'] as string | undefined;
      if (level !== undefined && !LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`);
      config = configFor(opts['config'] as string | undefined);
      const sipPort = port(opts['sip-port'], '--sip-port');
      const adminPort = port(opts['admin-port'], '--admin-port');
      if (sipPort !== undefined) config.listen = config.listen.map((l) => ({ ...l, port: sipPort }));
      if (adminPort !== undefined) config.admin = { ...config.admin, port: adminPort };
      checkOperational(config, (opts['config'] as string | undefined) ?? 'quick-start configuration');
    } catch (err) {
      if (err instanceof UsageError) {
        process.stderr.write(`sipledger start: ${err.message}\nRun 'sipledger start --help' for usage.\n`);
        return EXIT_USAGE;
      }
      return reportConfigError(err);
    }
    const logger = createLogger((opts['log-level'] as string | undefined) ?? config.logging.level);
    let app: Sipledger;
    try {
      app = await startSipledger(config, logger);
    } catch (err) {
      const e = err as { message?: string; code?: string; cause?: { message?: string; code?: string } };
      const cause = e.cause?.code ?? e.cause?.message;
      logger.fatal({ err: { message: e.message, code: e.code, ...(cause ? { cause } : {}) } }, 'sipledger could not start');
      process.stderr.write(`sipledger start: could not start: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}${cause ? `: ${cause}` : ''}\n`);
      // Whatever was opened before the failure (sockets, the log) must not keep the process alive.
      setImmediate(() => process.exit(EXIT_FAILURE));
      return EXIT_FAILURE;
    }
    if (!opts['config']) {
      const l = app.transports.listening()[0];
      const at = `${l?.address}:${l?.port}`;
      const scenario = path.join(packageRoot(), 'test', 'fixtures', 'sipp', 'register.xml');
      process.stderr.write(
        `\nsipledger is running (quick start). Register a phone, SIPp or sipsak against it:\n` +
          `  registrar/proxy: ${at} (UDP and TCP), domain sipledger.test\n` +
          `  users: alice / alice-secret, bob / bob-secret\n` +
          (existsSync(scenario)
            ? `  SIPp:   sipp ${at} -sf ${path.relative(process.cwd(), scenario) || scenario} -m 1 -i 127.0.0.1 -p 5070 -key user alice -key domain sipledger.test -key contact 127.0.0.1:5070 -key expires 3600 -au alice -ap alice-secret\n`
            : '') +
          `  sipsak: sipsak -U -x 3600 -C sip:alice@127.0.0.1:5070 -s sip:alice@sipledger.test -a alice-secret -u alice -p ${at} -vv\n` +
          `          (sipsak resolves the domain: add "127.0.0.1 sipledger.test" to /etc/hosts first)\n` +
          (app.admin ? `  bindings: curl ${app.admin.address()}/location   (or: npx sipledger location show)\n` : '') +
          `  events:   ./data/log (npx sipledger log tail)\n` +
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
          process.exit(EXIT_OK);
        },
        (err: unknown) => {
          logger.error({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'stop failed');
          logger.flush?.();
          process.exit(EXIT_FAILURE);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      logger.info({ signal: 'SIGHUP' }, 'reloading in-memory users');
      app.reload();
    });
    return -1;
  },
};

function port(value: string | boolean | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || n > 65535) throw new UsageError(`${option} must be a port number 0-65535`);
  return n;
}
