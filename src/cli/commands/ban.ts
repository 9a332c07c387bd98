import { mkdirSync } from 'node:fs';
import { pino } from 'pino';
import { parseArgs, UsageError } from '../args.js';
import { configFor, reportConfigError } from './shared.js';
import { createLogger } from '../../logger.js';
import { resolveSecret, type SipledgerConfig } from '../../config/config.js';
import { LogError, type EventLog } from '../../core/log/event-log.js';
import type { SipledgerEvent } from '../../core/log/events.js';
import { eventSchemas } from '../../core/log/schemas.js';
import { FOREVER, manualBanAdded, manualBanRemoved, parseDuration } from '../../core/security/ban-admin.js';
import type { BanView } from '../../core/security/ban-values.js';
import { BansProjection } from '../../projections/bans.js';
import { FileLog } from '../../backends/log/file-log.js';
import { KafkaLog } from '../../backends/log/kafka-log.js';
import type { Command } from './index.js';

const USAGE = `Usage: sipledger ban list [-c FILE] [--json]
       sipledger ban add ip|user VALUE [--for DURATION] [--reason TEXT] [-c FILE]
       sipledger ban rm ip|user VALUE [-c FILE]
`;

export const banCommand: Command = {
  summary: 'list, add or lift bans of source addresses and users (ban list|add|rm)',
  help: `${USAGE}
Bans are events in the event log named by the configuration: a ban added here reaches every
instance that shares the log and survives restarts, exactly as the bans the brute-force guard adds
after repeated failed authentications.

  list                 bans in force now, those ending first first
  add ip ADDRESS       ban a source address, or a whole prefix (203.0.113.0/24, 2001:db8::/32)
  add user USER@REALM  ban an account, from every address
  rm ip|user VALUE     lift a ban (a prefix ban is lifted by naming the prefix)

Options:
  -c, --config FILE     configuration file (default: the embedded quick start)
      --for DURATION    how long: 90s, 15m, 2h, 7d or forever (default 1h)
      --reason TEXT     recorded with the ban (default 'added by an operator')
      --json            list as JSON

A file log is held by the sipledger process that runs on it; while it runs, the command goes
through that process's admin API (admin.enabled, GET/POST/DELETE /bans) instead.
Exit codes: 0 done, 1 the log or the admin API could not be reached, 2 usage or configuration error.
`,
  async run(argv) {
    let parsed;
    try {
      parsed = parseArgs(argv, {
        config: { type: 'string', short: 'c' },
        for: { type: 'string' },
        reason: { type: 'string' },
        json: { type: 'boolean' },
      });
    } catch (err) {
      return usageError(err);
    }
    const { options, positionals } = parsed;
    const [sub, scope, value, extra] = positionals;
    const now = Date.now();
    let request: Request;
    try {
      request = buildRequest(sub, scope, value, extra, options, now);
    } catch (err) {
      return usageError(err);
    }
    let config: SipledgerConfig;
    try {
      config = configFor(options['config'] as string | undefined);
    } catch (err) {
      return reportConfigError(err);
    }
    try {
      return await execute(request, config, now);
    } catch (err) {
      const code = (err as { code?: string }).code;
      process.stderr.write(`sipledger ban: ${(err as Error).message}${code ? ` (${code})` : ''}\n`);
      return 1;
    }
  },
};

type Request =
  | { readonly kind: 'list'; readonly json: boolean }
  | { readonly kind: 'append'; readonly event: SipledgerEvent; readonly scope: string; readonly value: string; readonly describe: string };

function buildRequest(
  sub: string | undefined,
  scope: string | undefined,
  value: string | undefined,
  extra: string | undefined,
  options: Record<string, string | boolean | undefined>,
  now: number,
): Request {
  if (sub === 'list') {
    if (scope !== undefined) throw new UsageError(`'ban list' takes no arguments`);
    return { kind: 'list', json: options['json'] === true };
  }
  if (sub !== 'add' && sub !== 'rm') throw new UsageError(sub === undefined ? 'a subcommand is needed: list, add or rm' : `unknown subcommand '${sub}'`);
  if (scope === undefined || value === undefined || extra !== undefined) throw new UsageError(`usage: sipledger ban ${sub} ip|user VALUE`);
  if (sub === 'add') {
    let seconds: number | 'forever' | undefined;
    if (options['for'] !== undefined) {
      seconds = parseDuration(String(options['for']));
      if (seconds === undefined) throw new UsageError(`--for: '${String(options['for'])}' is not a duration (90s, 15m, 2h, 7d, forever)`);
    }
    const r = manualBanAdded(
      { scope, value, ...(seconds !== undefined ? { seconds } : {}), ...(options['reason'] !== undefined ? { reason: String(options['reason']) } : {}) },
      now,
    );
    if (!r.ok) throw new UsageError(r.error);
    return { kind: 'append', event: r.event, scope: r.event.scope, value: r.event.value, describe: `banned ${r.event.scope} ${r.event.value} until ${formatUntil(r.event.until)}` };
  }
  if (options['for'] !== undefined || options['reason'] !== undefined) throw new UsageError('--for and --reason apply to add only');
  const r = manualBanRemoved({ scope, value }, now);
  if (!r.ok) throw new UsageError(r.error);
  return { kind: 'append', event: r.event, scope: r.event.scope, value: r.event.value, describe: `lifted the ban of ${r.event.scope} ${r.event.value}` };
}

async function execute(request: Request, config: SipledgerConfig, now: number): Promise<number> {
  let log: EventLog;
  try {
    log = await openLog(config);
  } catch (err) {
    if (err instanceof LogError && err.code === 'LOG_LOCKED' && config.admin.enabled) return viaAdmin(request, config, now);
    throw err;
  }
  try {
    if (request.kind === 'list') {
      const bans = new BansProjection();
      for await (const { event } of log.read('start')) bans.apply(event);
      printBans(bans.active(now), request.json);
      return 0;
    }
    const checked = eventSchemas().validate(request.event);
    if (!checked.ok) throw new Error(`invalid event: ${checked.errors.join('; ')}`);
    // Whether a ban was in force, for the message only: the removal is recorded either way.
    let wasBanned = true;
    if (request.event.type === 'ban.removed') {
      const bans = new BansProjection();
      for await (const { event } of log.read('start')) bans.apply(event);
      const b = bans.get(request.event.scope, request.event.value);
      wasBanned = b !== undefined && b.until > now;
    }
    await log.append([request.event]);
    process.stdout.write(`${request.describe}${wasBanned ? '' : ' (none was in force)'}\n`);
    return 0;
  } finally {
    await log.close();
  }
}

async function openLog(config: SipledgerConfig): Promise<EventLog> {
  // Warnings of the log backends go to stderr; stdout carries the command's answer.
  const logger = createLogger('warn', pino.destination(2));
  const log = config.log;
  if (log.type === 'file') {
    mkdirSync(log.dir, { recursive: true });
    return FileLog.open({ dir: log.dir, fsync: log.fsync ?? 'batch', ...(log.segmentBytes !== undefined ? { segmentBytes: log.segmentBytes } : {}), logger });
  }
  if (log.type === 'kafka') {
    return KafkaLog.open({ brokers: log.brokers, topic: log.topic, clientId: `sipledger-ban-${process.pid}`, logger });
  }
  throw new LogError('LOG_CLOSED', 'the memory log lives inside the running process only; bans need a file or Kafka log', false);
}

/** The running process holds the file log: ask it, through its admin API, to do the same. */
async function viaAdmin(request: Request, config: SipledgerConfig, now: number): Promise<number> {
  const host = config.admin.address.includes(':') ? `[${config.admin.address}]` : config.admin.address;
  const base = `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${config.admin.port}/bans`;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (config.admin.token !== undefined) {
    headers['authorization'] = `Bearer ${resolveSecret(config.admin.token, config.baseDir)}`;
  }
  let res: Response;
  const signal = AbortSignal.timeout(10_000);
  try {
    if (request.kind === 'list') res = await fetch(base, { headers, signal });
    else if (request.event.type === 'ban.added') {
      const e = request.event;
      res = await fetch(base, { method: 'POST', headers, signal, body: JSON.stringify({ scope: e.scope, value: e.value, until: e.until, reason: e.reason }) });
    } else {
      res = await fetch(`${base}?scope=${encodeURIComponent(request.scope)}&value=${encodeURIComponent(request.value)}`, { method: 'DELETE', headers, signal });
    }
  } catch (err) {
    throw Object.assign(new Error(`the event log is held by a running sipledger, and its admin API at ${base} did not answer: ${(err as Error).message}`), { code: 'ADMIN_UNREACHABLE' });
  }
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON: reported below with the status.
  }
  if (!res.ok) {
    const why = typeof body['error'] === 'string' ? body['error'] : text.slice(0, 200);
    throw Object.assign(new Error(`the event log is held by a running sipledger; its admin API answered ${res.status} to ${request.kind === 'list' ? 'GET' : 'the change'} at ${base}: ${why}`), {
      code: 'ADMIN_REFUSED',
    });
  }
  if (request.kind === 'list') {
    printBans(((body['bans'] as BanView[] | undefined) ?? []).filter((b) => b.until > now), request.json);
  } else {
    const none = request.event.type === 'ban.removed' && body['removed'] === false;
    process.stdout.write(`${request.describe}${none ? ' (none was in force)' : ''}\n`);
  }
  return 0;
}

function printBans(bans: readonly BanView[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(bans.map((b) => ({ ...b, until: b.until >= FOREVER ? null : new Date(b.until).toISOString(), since: new Date(b.since).toISOString() })))}\n`);
    return;
  }
  if (bans.length === 0) {
    process.stdout.write('no bans in force\n');
    return;
  }
  const rows = bans.map((b) => [b.scope, b.value, formatUntil(b.until), b.reason]);
  const header = ['SCOPE', 'VALUE', 'UNTIL', 'REASON'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${[header, ...rows].map(line).join('\n')}\n`);
}

function formatUntil(until: number): string {
  return until >= FOREVER ? 'forever' : new Date(until).toISOString();
}

function usageError(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`sipledger ban: ${err.message}\n${USAGE}`);
    return 2;
  }
  throw err;
}
