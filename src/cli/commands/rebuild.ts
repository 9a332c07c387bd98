import { existsSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { FileLog } from '../../backends/log/file-log.js';
import { KafkaLog } from '../../backends/log/kafka-log.js';
import type { EventLog, LogPosition } from '../../core/log/event-log.js';
import { LogError } from '../../core/log/event-log.js';
import { Ledger } from '../../core/log/ledger.js';
import { parseArgs, UsageError } from '../args.js';
import { describeLog } from '../event-source.js';
import type { Command } from './index.js';
import { CommandFailure, configFor, EXIT_OK, guard, out, toolLogger } from './shared.js';

const SNAPSHOT_FILE = 'ledger-snapshot.json';

export const rebuildCommand: Command = {
  summary: 'rebuild every projection from the event log and write a fresh snapshot',
  help: `Usage: sipledger rebuild [-c FILE] [--progress auto|bar|log]

Replays the whole event log into fresh projections (location, audit, calls) and writes a new
snapshot, so that the next start restores it and replays only what follows. Use it after
upgrading to a version whose projections changed, after restoring a log from a backup, or when
a snapshot is suspected: sipledger never needs it to be correct (a snapshot it cannot trust is
ignored and the log replayed), only to start faster.

The previous snapshot is kept as ledger-snapshot.json.previous until the new one is written.

With a file log, rebuild takes the log's lock: stop sipledger first (it would overwrite the
snapshot at shutdown). With a Kafka log the instance whose snapshots.dir is configured should
be stopped.

Progress: on a terminal, a progress bar on stderr; otherwise JSON log lines on stderr every
second ('rebuild progress', with percent, events, ratePerSecond and etaSeconds), and a final
summary on stdout.

Options:
  -c, --config FILE     configuration file (default: the embedded quick-start configuration)
      --progress MODE   auto (default: bar on a terminal, log lines otherwise), bar or log

Exit codes: 0 rebuilt and snapshot written, 1 the log could not be read or is held by a running
sipledger, or the snapshot could not be written, 2 usage or configuration error.
`,
  run: (argv) =>
    guard('rebuild', async () => {
      const { options, positionals } = parseArgs(argv, { config: { type: 'string', short: 'c' }, progress: { type: 'string' } });
      if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      const mode = (options['progress'] as string | undefined) ?? 'auto';
      if (!['auto', 'bar', 'log'].includes(mode)) throw new UsageError(`--progress must be auto, bar or log, not '${mode}'`);
      const bar = mode === 'bar' || (mode === 'auto' && process.stderr.isTTY === true);
      const config = configFor(options['config'] as string | undefined);
      const snapshotDir = config.snapshots.dir;
      if (config.log.type === 'memory') throw new UsageError("log.type is 'memory': there is no stored log to rebuild from");
      if (!snapshotDir) throw new UsageError('snapshots.dir is not set: there is nowhere to write the snapshot');
      const logger = toolLogger('info');
      const quiet = bar ? toolLogger('warn') : logger;

      const log = await openLog(config, quiet);
      const end = await log.end();
      const progress = new Progress(total(end), bar, logger);
      // Counting what the ledger applies: the log's tail is wrapped, the ledger is unchanged.
      const counted: EventLog = {
        identity: log.identity,
        append: (events) => log.append(events),
        read: (from, opts) => log.read(from, opts),
        end: () => log.end(),
        close: () => log.close(),
        tail: (from, handler, opts) =>
          log.tail(
            from,
            (record) => {
              progress.tick(record.position);
              return handler(record);
            },
            opts,
          ),
      };
      const target = path.join(snapshotDir, SNAPSHOT_FILE);
      const previous = `${target}.previous`;
      const hadSnapshot = existsSync(target);
      if (hadSnapshot) renameSync(target, previous);
      let ledger: Ledger | undefined;
      try {
        progress.start();
        ledger = await Ledger.open({ log: counted, snapshotDir, snapshotEvery: 0, validate: false, logger: quiet.child({ module: 'ledger' }) });
        progress.finish();
        await ledger.snapshot();
      } catch (err) {
        progress.abort();
        await (ledger ? ledger.close() : log.close()).catch(() => undefined);
        if (hadSnapshot && !existsSync(target)) renameSync(previous, target);
        throw err instanceof LogError ? new CommandFailure(`${err.message}${err.cause ? `: ${(err.cause as Error).message}` : ''}`) : err;
      }
      const now = Date.now();
      const summary = {
        log: describeLog(config),
        events: ledger.appliedCount,
        seconds: Number(((now - progress.startedAt) / 1000).toFixed(3)),
        liveBindings: ledger.location.count(now),
        aors: ledger.location.aors(now).length,
        failedAuth: Object.values(ledger.audit.totals().failed).reduce((a, b) => a + (b ?? 0), 0),
        snapshot: target,
      };
      await ledger.close();
      out(
        `rebuilt from ${summary.events} events in ${summary.seconds}s (log: ${summary.log})\n` +
          `  live bindings: ${summary.liveBindings} for ${summary.aors} AOR(s); failed authentications on record: ${summary.failedAuth}\n` +
          `  snapshot written: ${summary.snapshot}${hadSnapshot ? ' (previous kept as ledger-snapshot.json.previous)' : ''}\n`,
      );
      return EXIT_OK;
    }),
};

async function openLog(config: ReturnType<typeof configFor>, logger: Logger): Promise<EventLog> {
  const log = config.log;
  if (log.type === 'file') {
    try {
      return await FileLog.open({ dir: log.dir, fsync: log.fsync ?? 'batch', logger: logger.child({ module: 'file-log' }) });
    } catch (err) {
      if (err instanceof LogError && err.code === 'LOG_LOCKED') {
        throw new CommandFailure(`${err.message}: stop sipledger before rebuilding (it writes its own snapshot when it stops)`);
      }
      throw err;
    }
  }
  if (log.type === 'kafka') {
    return KafkaLog.open({ brokers: log.brokers, topic: log.topic, clientId: `${log.clientId ?? 'sipledger'}-rebuild-${process.pid}`, logger });
  }
  throw new UsageError("log.type is 'memory'");
}

function total(p: LogPosition): number {
  return Object.values(p).reduce((a, b) => a + b, 0);
}

/** Progress of a replay: a bar on a terminal, rate and ETA log lines otherwise. */
class Progress {
  startedAt = Date.now();
  #events = 0;
  #done = 0;
  #lastDraw = 0;
  constructor(
    private readonly total: number,
    private readonly bar: boolean,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.startedAt = Date.now();
    this.#lastDraw = this.startedAt;
    this.#report(true);
  }

  tick(position: LogPosition): void {
    this.#events++;
    this.#done = total(position);
    // The clock is read every 1024 events only: replay runs at hundreds of thousands per second.
    if ((this.#events & 1023) !== 0) return;
    const now = Date.now();
    if (now - this.#lastDraw < (this.bar ? 100 : 1000)) return;
    this.#lastDraw = now;
    this.#report(false);
  }

  finish(): void {
    this.#done = Math.max(this.#done, this.total);
    this.#report(true);
    if (this.bar) process.stderr.write('\n');
  }

  abort(): void {
    if (this.bar) process.stderr.write('\n');
  }

  #report(force: boolean): void {
    const elapsed = Math.max(1, Date.now() - this.startedAt) / 1000;
    const fraction = this.total > 0 ? Math.min(1, this.#done / this.total) : 1;
    const rate = this.#events / elapsed;
    const eta = fraction > 0 && fraction < 1 ? (elapsed / fraction) * (1 - fraction) : 0;
    const percent = Math.floor(fraction * 1000) / 10;
    if (this.bar) {
      const width = 30;
      const filled = Math.round(fraction * width);
      process.stderr.write(
        `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${percent.toFixed(1).padStart(5)}%  ${this.#events} events  ${Math.round(rate)}/s  ETA ${Math.ceil(eta)}s `,
      );
      return;
    }
    if (!force && fraction >= 1) return;
    this.logger.info(
      { percent, events: this.#events, bytes: this.#done, totalBytes: this.total, ratePerSecond: Math.round(rate), etaSeconds: Math.ceil(eta) },
      'rebuild progress',
    );
  }
}
