import { AUTH_FAILURE_CAUSES, type AuthFailureCause } from '../../core/log/events.js';
import { AuditProjection } from '../../projections/audit.js';
import { parseArgs, UsageError } from '../args.js';
import { configEvents, describeLog } from '../event-source.js';
import type { LogProblem } from '../log-reader.js';
import type { Command } from './index.js';
import { warnDamage } from './location.js';
import { configFor, EXIT_OK, guard, iso, out, parseCount, parseTime, table, toolLogger } from './shared.js';

export const auditCommand: Command = {
  summary: 'who failed to authenticate, from where, why (from the event log)',
  help: `Usage: sipledger audit failed [--since TIME] [--until TIME] [--user U] [--ip A]
                              [--cause C] [--limit N] [-c FILE] [--json]

Lists failed authentication attempts, most recent first, from the audit projection rebuilt by
reading the event log named by the configuration (every auth.failed event). A summary by cause,
by source address and by user follows the table. Works while sipledger is running (a file log
is read without taking its lock).

Options:
  -c, --config FILE   configuration file (default: the embedded quick-start configuration)
      --since TIME    window start: a duration ago (15m, 1h, 7d), an ISO date, a time
                      today (08:00) or epoch ms; default 1h
      --until TIME    window end (exclusive); default now
      --user U        only attempts naming this username (the digest username)
      --ip A          only attempts from this source address
      --cause C       only this outcome: ${AUTH_FAILURE_CAUSES.join(', ')}
      --limit N       at most N rows (default 1000)
      --json          print JSON: {"since", "until", "failures": [...], "byCause", "byIp", "byUser"}

Exit codes: 0 printed (also when nothing failed), 1 the log could not be read,
2 usage or configuration error.

Examples:
  sipledger audit failed -c /etc/sipledger/sipledger.yaml --since 24h
  sipledger audit failed --ip 203.0.113.9 --cause bad_password --json
`,
  run: (argv) =>
    guard('audit', async () => {
      const { options, positionals } = parseArgs(argv, {
        config: { type: 'string', short: 'c' },
        since: { type: 'string' },
        until: { type: 'string' },
        user: { type: 'string' },
        ip: { type: 'string' },
        cause: { type: 'string' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
      });
      const [sub, ...extra] = positionals;
      if (sub !== 'failed') throw new UsageError(sub ? `unknown subcommand '${sub}' (expected: failed)` : 'missing subcommand (expected: failed)');
      if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
      const now = Date.now();
      const since = parseTime((options['since'] as string | undefined) ?? '1h', now, '--since');
      const until = options['until'] !== undefined ? parseTime(options['until'] as string, now, '--until') : undefined;
      const cause = options['cause'] as string | undefined;
      if (cause !== undefined && !AUTH_FAILURE_CAUSES.includes(cause as AuthFailureCause)) {
        throw new UsageError(`--cause must be one of ${AUTH_FAILURE_CAUSES.join(', ')}, not '${cause}'`);
      }
      const limit = parseCount(options['limit'] as string | undefined, '--limit', 1000);
      const config = configFor(options['config'] as string | undefined);
      const logger = toolLogger();

      // Capacity large enough that a window query over a long log is not cut by the ring.
      const audit = new AuditProjection({ capacity: 10_000_000 });
      const damaged: LogProblem[] = [];
      for await (const { event } of configEvents(config, logger, (p) => p.kind !== 'torn-tail' && damaged.push(p))) {
        if (event.type === 'auth.failed' || event.type === 'auth.succeeded') audit.apply(event);
      }
      warnDamage(damaged);
      const window = { since, ...(until !== undefined ? { until } : {}) };
      const q = {
        ...window,
        ...(options['user'] !== undefined ? { user: options['user'] as string } : {}),
        ...(options['ip'] !== undefined ? { ip: options['ip'] as string } : {}),
        ...(cause !== undefined ? { cause: cause as AuthFailureCause } : {}),
      };
      const failures = audit.failures({ ...q, limit });
      const all = audit.failures(q);
      const countBy = (key: (f: (typeof all)[number]) => string | undefined): Array<{ key: string; count: number }> => {
        const m = new Map<string, number>();
        for (const f of all) {
          const k = key(f);
          if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1);
        }
        return [...m].map(([k, count]) => ({ key: k, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
      };
      const byCause = countBy((f) => f.cause);
      const byIp = countBy((f) => f.ip);
      const byUser = countBy((f) => f.user);
      if (options['json']) {
        out(
          JSON.stringify(
            { since: iso(since), until: iso(until ?? now), log: describeLog(config), total: all.length, failures, byCause, byIp, byUser },
            null,
            2,
          ) + '\n',
        );
        return EXIT_OK;
      }
      out(`failed authentication ${iso(since)} .. ${iso(until ?? now)} (log: ${describeLog(config)})\n`);
      if (all.length === 0) {
        out('no failed attempts\n');
        return EXIT_OK;
      }
      out(
        table(
          ['TIME', 'USER', 'DOMAIN', 'METHOD', 'SOURCE', 'CAUSE', 'USER-AGENT'],
          failures.map((f) => [iso(f.time), f.user ?? '-', f.domain, f.method, `${f.transport}:${f.ip}:${f.port}`, f.cause, f.userAgent ?? '']),
        ),
      );
      if (failures.length < all.length) out(`(${all.length - failures.length} older rows not shown; raise --limit)\n`);
      const summary = (title: string, rows: Array<{ key: string; count: number }>): string =>
        `${title}: ${rows
          .slice(0, 10)
          .map((r) => `${r.key} ${r.count}`)
          .join(', ')}${rows.length > 10 ? ', ...' : ''}\n`;
      out(`\n${all.length} failed attempt(s)\n`);
      out(summary('by cause', byCause));
      out(summary('by source', byIp));
      if (byUser.length) out(summary('by user', byUser));
      return EXIT_OK;
    }),
};
