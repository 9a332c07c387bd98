import { canonicalAor } from '../../core/log/events.js';
import { LocationProjection } from '../../projections/location.js';
import { parseArgs, UsageError } from '../args.js';
import { configEvents, describeLog } from '../event-source.js';
import type { LogProblem } from '../log-reader.js';
import type { Command } from './index.js';
import { configFor, EXIT_OK, guard, iso, out, parseTime, table, toolLogger } from './shared.js';

export const locationCommand: Command = {
  summary: 'show the location table, now or at a past time, from the event log',
  help: `Usage: sipledger location show [AOR] [--at TIME] [-c FILE] [--json]

Prints the live bindings (contacts) of every address of record, or of AOR alone, as the
location table was at TIME (default: now). The table is rebuilt by reading the event log
named by the configuration: every contact.* event up to TIME is applied to a fresh location
projection, and a binding is shown if it had not expired at TIME. This is the log's own answer,
independent of the running process, so it also works while sipledger is stopped.

With a file log it reads the segment files without taking the log's lock, so it can run while
sipledger is running; it sees every event that was durable when it started reading. With a
Kafka log it reads the topic from the beginning.

Arguments:
  AOR                 an address of record: alice@example.com or sip:alice@example.com

Options:
  -c, --config FILE   configuration file (default: the embedded quick-start configuration)
      --at TIME       an ISO date (2024-05-01T14:03:00Z), a time today (14:03, local
                      time), epoch milliseconds, or a duration ago (90s, 15m, 1h, 2d);
                      default now
      --json          print JSON: {"at": ISO, "aors": [{"aor", "bindings": [...]}]}

Columns: AOR, CONTACT (as registered), EXPIRES (seconds left at TIME), Q, SOURCE (where the
REGISTER came from), USER-AGENT.

Exit codes: 0 printed (also when no binding is live), 1 the log could not be read,
2 usage or configuration error.

Examples:
  sipledger location show -c /etc/sipledger/sipledger.yaml
  sipledger location show alice@example.com --at 2024-05-01T14:03:00Z
  sipledger location show --at 2h --json
`,
  run: (argv) =>
    guard('location', async () => {
      const { options, positionals } = parseArgs(argv, {
        config: { type: 'string', short: 'c' },
        at: { type: 'string' },
        json: { type: 'boolean' },
      });
      const [sub, aorArg, ...extra] = positionals;
      if (sub !== 'show') throw new UsageError(sub ? `unknown subcommand '${sub}' (expected: show)` : 'missing subcommand (expected: show)');
      if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
      let aor: string | undefined;
      if (aorArg !== undefined) {
        const c = canonicalAor(/^sips?:/i.test(aorArg) ? aorArg : `sip:${aorArg}`);
        if (!c) throw new UsageError(`'${aorArg}' is not an address of record (expected user@domain)`);
        aor = c;
      }
      const now = Date.now();
      const at = options['at'] !== undefined ? parseTime(options['at'] as string, now, '--at') : now;
      const config = configFor(options['config'] as string | undefined);
      const logger = toolLogger();

      const projection = new LocationProjection();
      const damaged: LogProblem[] = [];
      // Events are applied in log order, up to TIME: the projection is then the table as it was.
      for await (const { event } of configEvents(config, logger, (p) => p.kind !== 'torn-tail' && damaged.push(p))) {
        if (event.time <= at) projection.apply(event);
      }
      warnDamage(damaged);
      const aors = aor ? [aor] : projection.aors(at);
      const result = aors.map((a) => ({ aor: a, bindings: projection.bindings(a, at) })).filter((x) => x.bindings.length > 0 || aor);
      if (options['json']) {
        out(JSON.stringify({ at: iso(at), log: describeLog(config), aors: result }, null, 2) + '\n');
        return EXIT_OK;
      }
      const rows = result.flatMap(({ aor: a, bindings }) =>
        bindings.map((b) => [
          a,
          b.contact,
          String(Math.max(0, Math.round((b.expiresAt - at) / 1000))),
          String(b.q),
          `${b.source.transport}:${b.source.address}:${b.source.port}`,
          b.userAgent ?? '',
        ]),
      );
      out(`location at ${iso(at)} (log: ${describeLog(config)})\n`);
      if (rows.length === 0) {
        out(aor ? `no live bindings for ${aor}\n` : 'no live bindings\n');
        return EXIT_OK;
      }
      out(table(['AOR', 'CONTACT', 'EXPIRES', 'Q', 'SOURCE', 'USER-AGENT'], rows));
      out(`${rows.length} binding(s), ${result.filter((r) => r.bindings.length > 0).length} AOR(s)\n`);
      return EXIT_OK;
    }),
};

/** Damage met while reading is reported on stderr; the answer covers the readable events. */
export function warnDamage(problems: readonly LogProblem[]): void {
  for (const p of problems) {
    process.stderr.write(`warning: ${p.kind} region of ${p.bytes} bytes at offset ${p.offset} (${p.segment}): ${p.reason}; run 'sipledger log verify'\n`);
  }
}
