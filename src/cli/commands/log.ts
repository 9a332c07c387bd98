import path from 'node:path';
import type { SipledgerEvent } from '../../core/log/events.js';
import { KafkaLog } from '../../backends/log/kafka-log.js';
import type { SipledgerConfig } from '../../config/config.js';
import { parseArgs, UsageError } from '../args.js';
import { configEvents } from '../event-source.js';
import { followRecords, lockHolder, logEnd, readRecords, verifyLog, type LogProblem } from '../log-reader.js';
import type { Command } from './index.js';
import { warnDamage } from './location.js';
import { CommandFailure, configFor, EXIT_FAILURE, EXIT_OK, guard, iso, out, parseCount, toolLogger } from './shared.js';

const HELP = `Usage: sipledger log inspect [-c FILE | --dir DIR] [--from OFFSET] [--limit N] [--type T] [--json]
       sipledger log verify  [-c FILE | --dir DIR] [--json]
       sipledger log tail    [-c FILE | --dir DIR] [-n N] [--no-follow] [--json]

Reads the event log: the append-only record of every registration, authentication outcome and
call step, from which sipledger rebuilds its location table and audit trail.

A file log is read without taking its lock and without changing it, so every subcommand can
run beside a running sipledger. (sipledger itself cuts a torn tail when it next opens the log;
these tools only report it.)

Subcommands:
  inspect   print records, one per line: OFFSET TIME TYPE SUMMARY (or JSON lines with the
            offset and the whole event). Works with file and Kafka logs.
  verify    read every record of a file log, check each frame's length and CRC-32C and that
            its payload is a known event; report damaged regions (corrupt bytes with intact
            records after them, a torn tail, undecodable records, gaps between segments,
            segments set aside by an earlier repair) with their offsets and sizes.
  tail      print the last N records, then follow the log and print each new record as it
            becomes durable, until interrupted (Ctrl-C or SIGTERM; exit 0).

Options:
  -c, --config FILE   configuration file; its log section names the log
                      (default: the embedded quick-start configuration, ./data/log)
      --dir DIR       a file log directory, instead of a configuration
      --from OFFSET   inspect: start at this record offset (as printed by inspect)
      --limit N       inspect: print at most N records
      --type T        inspect: only events of this type (e.g. contact.bound, auth.failed)
  -n, --lines N       tail: how many existing records to print first (default 10)
      --no-follow     tail: print the last N records and exit
      --json          machine-readable output

Exit codes: 0 success (verify: no damage that loses data; a torn tail or an orphan is
reported but does not fail), 1 damage found (corrupt or undecodable records, gaps) or the log
could not be read, 2 usage or configuration error. Run verify before starting sipledger after a
disk error: sipledger treats a CRC failure in the last segment as a torn tail and cuts the log
there, intact records after it included.

Examples:
  sipledger log verify -c /etc/sipledger/sipledger.yaml
  sipledger log inspect --dir /var/lib/sipledger/log --type auth.failed --limit 20
  sipledger log tail -c /etc/sipledger/sipledger.yaml --json | jq .
`;

interface LogTarget {
  readonly dir?: string;
  readonly config?: SipledgerConfig;
}

function target(options: Record<string, string | boolean | undefined>): LogTarget {
  if (options['dir'] !== undefined) {
    if (options['config'] !== undefined) throw new UsageError('give either --dir or -c, not both');
    return { dir: path.resolve(options['dir'] as string) };
  }
  const config = configFor(options['config'] as string | undefined);
  return config.log.type === 'file' ? { dir: config.log.dir, config } : { config };
}

/** One line that says what an event was about, without its secrets (events carry none). */
export function summarize(e: SipledgerEvent): string {
  switch (e.type) {
    case 'contact.bound':
    case 'contact.refreshed':
      return `${e.aor} -> ${e.uri} expires ${iso(e.expiresAt)} from ${e.source.transport}:${e.source.address}:${e.source.port}`;
    case 'contact.removed':
      return `${e.aor} -> ${e.uri} (${e.reason})`;
    case 'contact.expired':
      return `${e.aor} -> ${e.uri}`;
    case 'auth.succeeded':
      return `${e.user}@${e.realm} ${e.method} from ${e.source.transport}:${e.source.address}:${e.source.port}`;
    case 'auth.failed':
      return `${e.user ?? '-'}@${e.realm} ${e.method} ${e.cause} from ${e.source.transport}:${e.source.address}:${e.source.port}`;
    case 'call.attempted':
      return `${e.callId} ${e.from} -> ${e.to}`;
    case 'call.routed':
      return `${e.callId} -> ${e.targets.join(', ')}`;
    case 'call.answered':
      return `${e.callId} ${e.status}`;
    case 'call.failed':
      return `${e.callId} ${e.status}${e.reason ? ` ${e.reason}` : ''}`;
    case 'call.ended':
      return `${e.callId}${e.by ? ` by ${e.by}` : ''}`;
    case 'ban.added':
      return `${e.scope} ${e.value} until ${iso(e.until)}: ${e.reason}`;
    case 'ban.removed':
      return `${e.scope} ${e.value}`;
    default:
      return '';
  }
}

function printRecord(offset: number | undefined, event: SipledgerEvent, json: boolean): void {
  if (json) out(JSON.stringify(offset !== undefined ? { offset, ...event } : event) + '\n');
  else out(`${offset !== undefined ? String(offset).padStart(10) : '         -'}  ${iso(event.time)}  ${event.type.padEnd(17)}  ${summarize(event)}\n`);
}

export const logCommand: Command = {
  summary: 'read, verify (CRC) and follow the event log',
  help: HELP,
  run: (argv) =>
    guard('log', async () => {
      const { options, positionals } = parseArgs(argv, {
        config: { type: 'string', short: 'c' },
        dir: { type: 'string' },
        from: { type: 'string' },
        limit: { type: 'string' },
        type: { type: 'string' },
        lines: { type: 'string', short: 'n' },
        'no-follow': { type: 'boolean' },
        json: { type: 'boolean' },
      });
      const [sub, ...extra] = positionals;
      if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
      const json = options['json'] === true;
      switch (sub) {
        case 'inspect':
          return inspect(target(options), options, json);
        case 'verify':
          return verify(target(options), json);
        case 'tail':
          return tail(target(options), options, json);
        default:
          throw new UsageError(sub ? `unknown subcommand '${sub}' (expected: inspect, verify, tail)` : 'missing subcommand (expected: inspect, verify, tail)');
      }
    }),
};

async function inspect(t: LogTarget, options: Record<string, string | boolean | undefined>, json: boolean): Promise<number> {
  const from = parseCount(options['from'] as string | undefined, '--from', 0);
  const limit = parseCount(options['limit'] as string | undefined, '--limit', Infinity);
  const type = options['type'] as string | undefined;
  const damaged: LogProblem[] = [];
  let n = 0;
  if (t.dir) {
    for await (const r of readRecords(t.dir, { from, onProblem: (p) => damaged.push(p) })) {
      if (n >= limit) break;
      if (type !== undefined && r.event.type !== type) continue;
      printRecord(r.offset, r.event, json);
      n++;
    }
  } else {
    if (options['from'] !== undefined) throw new UsageError('--from applies to file logs only');
    for await (const r of configEvents(t.config!, toolLogger(), (p) => damaged.push(p))) {
      if (n >= limit) break;
      if (type !== undefined && r.event.type !== type) continue;
      printRecord(r.offset, r.event, json);
      n++;
    }
  }
  warnDamage(damaged);
  return EXIT_OK;
}

async function verify(t: LogTarget, json: boolean): Promise<number> {
  if (!t.dir) throw new UsageError('verify checks the CRCs of a file log; a Kafka topic is checked by its brokers');
  const report = await verifyLog(t.dir);
  const holder = lockHolder(t.dir);
  // A torn tail was never acknowledged (sipledger cuts it at its next start, and under a live
  // writer it is most likely a group commit being written): it is reported, not failed. An orphan
  // was already set aside. Damage with intact records after it is what loses acknowledged events.
  const failing = report.problems.filter((p) => p.kind !== 'torn-tail' && p.kind !== 'orphan');
  if (json) {
    out(JSON.stringify({ ...report, runningPid: holder ?? null, ok: failing.length === 0 }, null, 2) + '\n');
    return failing.length === 0 ? EXIT_OK : EXIT_FAILURE;
  }
  out(`log ${report.dir}${report.identity ? ` (${report.identity})` : ''}${holder !== undefined ? `, held by running sipledger pid ${holder}` : ''}\n`);
  out(`  segments: ${report.segments}, bytes: ${report.bytes}, records: ${report.records}\n`);
  if (report.firstTime !== undefined) out(`  events from ${iso(report.firstTime)} to ${iso(report.lastTime!)}\n`);
  const types = Object.entries(report.byType).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  if (types.length) out(`  by type: ${types.map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
  for (const p of report.problems) {
    const note =
      p.kind === 'torn-tail' ? (holder !== undefined ? ' (sipledger is writing: probably a write in progress)' : ' (never acknowledged; harmless)') : '';
    out(`  ${p.kind.toUpperCase()} at offset ${p.offset} in ${p.segment}, ${p.bytes} bytes: ${p.reason}${note}\n`);
  }
  if (failing.length === 0) {
    out('ok: every acknowledged record is intact\n');
    return EXIT_OK;
  }
  out(`damaged: ${failing.length} region(s); see docs/operations.md, "Crash recovery"\n`);
  return EXIT_FAILURE;
}

async function tail(t: LogTarget, options: Record<string, string | boolean | undefined>, json: boolean): Promise<number> {
  const lines = parseCount(options['lines'] as string | undefined, '--lines', 10);
  const follow = options['no-follow'] !== true;
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (t.dir) {
      const dir = t.dir;
      // The last N records, then everything after them.
      const end = logEnd(dir);
      const last: Array<{ offset: number; event: SipledgerEvent }> = [];
      // Following resumes right after the last intact record (not at `end`, which may hold a torn tail).
      let from = 0;
      for await (const r of readRecords(dir, { reportTornTail: false })) {
        if (r.end > end) break;
        from = r.end;
        last.push({ offset: r.offset, event: r.event });
        if (last.length > lines) last.shift();
      }
      for (const r of last) printRecord(r.offset, r.event, json);
      if (!follow) return EXIT_OK;
      for await (const r of followRecords(dir, { from, signal: stop.signal, onProblem: (p) => warnDamage([p]) })) printRecord(r.offset, r.event, json);
      return EXIT_OK;
    }
    const log = t.config!.log;
    if (log.type !== 'kafka') throw new UsageError("log.type is 'memory': nothing to follow");
    const kafka = await KafkaLog.open({ brokers: log.brokers, topic: log.topic, clientId: `${log.clientId ?? 'sipledger'}-tail-${process.pid}`, logger: toolLogger() });
    try {
      const endPos = await kafka.end();
      const failed = new Promise<never>((_, reject) => {
        const sub = kafka.tail(endPos, (r) => printRecord(undefined, r.event, json), {
          onError: (err) => reject(new CommandFailure(`lost the log: ${err.message}`)),
        });
        stop.signal.addEventListener('abort', () => void sub.close(), { once: true });
      });
      if (!follow) return EXIT_OK;
      await Promise.race([failed, new Promise<void>((r) => stop.signal.addEventListener('abort', () => r(), { once: true }))]);
      return EXIT_OK;
    } finally {
      await kafka.close();
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
