/**
 * Prometheus text exposition (format 0.0.4) of sipledger's counters and gauges.
 *
 * Three sources: counters the running components keep (router, transaction layer, backends),
 * counters derived here from the events the ledger applies (authentication outcomes by cause and
 * domain, registrations by domain: every instance sharing a Kafka log counts the same events), and
 * gauges read at scrape time (live contacts, readiness, projection lag). Nothing is computed per
 * request; a scrape walks a few maps.
 */
import { statSync } from 'node:fs';
import type { Sipledger } from '../app.js';
import type { SipledgerEvent } from '../core/log/events.js';
import { listSegments } from '../cli/log-reader.js';

type Labels = Record<string, string>;
type Sample = [Labels, number];

/** Counters derived from the applied events since this process started. */
export class EventCounters {
  /** key: result \0 cause \0 domain */
  readonly auth = new Map<string, number>();
  /** key: type \0 domain */
  readonly contacts = new Map<string, number>();
  readonly calls = new Map<string, number>();
  events = 0;

  /** Registers on the ledger; returns the function that stops counting. */
  static attach(app: Sipledger): { counters: EventCounters; detach: () => void } {
    const counters = new EventCounters();
    const detach = app.ledger.onEvent((e) => counters.apply(e));
    return { counters, detach };
  }

  apply(e: SipledgerEvent): void {
    this.events++;
    switch (e.type) {
      case 'auth.succeeded':
        bump(this.auth, `ok\u0000\u0000${e.domain}`);
        break;
      case 'auth.failed':
        bump(this.auth, `failed\u0000${e.cause}\u0000${e.domain}`);
        break;
      case 'contact.bound':
      case 'contact.refreshed':
      case 'contact.removed':
      case 'contact.expired':
        bump(this.contacts, `${e.type}\u0000${domainOf(e.aor)}`);
        break;
      case 'call.attempted':
      case 'call.answered':
      case 'call.failed':
      case 'call.ended':
        bump(this.calls, e.type);
        break;
      default:
        break;
    }
  }
}

function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function domainOf(aor: string): string {
  const at = aor.lastIndexOf('@');
  return at === -1 ? '' : aor.slice(at + 1);
}

function escape(v: string): string {
  return v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

export function renderMetrics(app: Sipledger, now: number, derived?: EventCounters): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: Sample[]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${escape(v)}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? value : 0}`);
    }
  };

  // --- SIP requests and responses (router)
  const r = app.router.stats;
  metric('sipledger_requests_total', 'counter', 'SIP requests handled, by method', Object.entries(r.requests).map(([m, v]) => [{ method: m }, v]));
  metric(
    'sipledger_responses_total',
    'counter',
    'SIP responses sent, by request method and status code',
    Object.entries(r.responses).map(([k, v]) => {
      const [method, code] = k.split(' ');
      return [{ method: method ?? '', code: code ?? '' }, v];
    }),
  );
  metric('sipledger_auth_outcomes_total', 'counter', 'Authentication outcomes decided by this instance, by outcome', Object.entries(r.authOutcomes).map(([o, v]) => [{ outcome: o }, v]));
  metric('sipledger_registrations_total', 'counter', 'REGISTER requests accepted and made durable by this instance', [[{}, r.registrations]]);
  metric('sipledger_event_append_failures_total', 'counter', 'Event appends that failed (the request got 500/503)', [[{}, r.appendFailures]]);
  metric('sipledger_register_queue_full_total', 'counter', 'REGISTERs answered 503 because too many registrations of their AOR were waiting', [[{}, r.aorQueueFull]]);
  metric('sipledger_register_stale_total', 'counter', 'Authenticated REGISTERs whose transaction ended while they waited for their AOR (not decided)', [[{}, r.staleRegistrations]]);
  metric('sipledger_register_waiting', 'gauge', 'REGISTERs waiting for their AOR while another registration of it is decided', [[{}, app.router.aorLocks.waitingCount]]);

  // --- transactions (RFC 3261 s17)
  const t = app.transactions.stats as unknown as Record<string, number>;
  metric('sipledger_transactions', 'gauge', 'Transactions in progress, by kind', [
    [{ kind: 'server' }, t['serverTransactions'] ?? 0],
    [{ kind: 'client' }, t['clientTransactions'] ?? 0],
  ]);
  metric('sipledger_retransmissions_absorbed_total', 'counter', 'Request retransmissions answered from the transaction (never re-processed)', [[{}, t['retransmissionsAbsorbed'] ?? 0]]);
  metric(
    'sipledger_transaction_events_total',
    'counter',
    'Transaction layer events, by event',
    Object.entries(t)
      .filter(([k, v]) => typeof v === 'number' && k !== 'serverTransactions' && k !== 'clientTransactions')
      .map(([k, v]) => [{ event: k }, v]),
  );

  // --- transports
  const tr = app.transports.stats;
  metric('sipledger_connections_open', 'gauge', 'TCP and TLS connections open', [[{}, tr.connectionsOpen]]);
  metric(
    'sipledger_transport_events_total',
    'counter',
    'Transport events, by event: messages and bytes in and out, malformed input, connections, send errors, UDP datagrams an I/O thread dropped',
    Object.entries(tr)
      .filter(([k]) => k !== 'connectionsOpen')
      .map(([k, v]) => [{ event: k }, v]),
  );

  // --- events applied (this instance's and, with Kafka, every other instance's)
  if (derived) {
    metric(
      'sipledger_auth_events_total',
      'counter',
      'auth.* events applied since start, by result, cause and domain',
      [...derived.auth].map(([k, v]) => {
        const [result, cause, domain] = k.split('\u0000');
        return [{ result: result ?? '', cause: cause ?? '', domain: domain ?? '' }, v];
      }),
    );
    metric(
      'sipledger_contact_events_total',
      'counter',
      'contact.* events applied since start, by type and domain',
      [...derived.contacts].map(([k, v]) => {
        const [type, domain] = k.split('\u0000');
        return [{ type: type ?? '', domain: domain ?? '' }, v];
      }),
    );
    metric('sipledger_call_events_total', 'counter', 'call.* events applied since start, by type', [...derived.calls].map(([k, v]) => [{ type: k }, v]));
  }

  // --- projections and the log
  const location = app.ledger.location;
  metric('sipledger_live_contacts', 'gauge', 'Live contacts (bindings) in the location projection', [[{}, location.count(now)]]);
  metric('sipledger_registered_aors', 'gauge', 'Addresses of record with at least one live contact', [[{}, location.aors(now).length]]);
  metric('sipledger_ready', 'gauge', '1 when the projections have caught up with the log', [[{}, app.ledger.ready ? 1 : 0]]);
  metric('sipledger_ledger_applied_events_total', 'counter', 'Events applied to the projections since start (replay included)', [[{}, app.ledger.appliedCount]]);
  const totals = app.ledger.audit.totals();
  metric('sipledger_audit_failed_total', 'counter', 'Failed authentications on record in the log, by cause', Object.entries(totals.failed).map(([c, v]) => [{ cause: c }, v ?? 0]));
  const position = Object.values(app.ledger.position).reduce((a, b) => a + b, 0);
  metric('sipledger_ledger_position', 'gauge', 'Log position the projections have reached (file log: bytes; Kafka: sum of offsets)', [[{}, position]]);
  if (app.config.log.type === 'file') {
    const end = fileLogEnd(app.config.log.dir);
    if (end !== undefined) {
      metric('sipledger_log_bytes', 'gauge', 'Size of the file event log', [[{}, end]]);
      metric('sipledger_projection_lag_bytes', 'gauge', 'Bytes of the log not yet applied to the projections', [[{}, Math.max(0, end - position)]]);
    }
  }

  // --- credential backends
  const backendSamples: Sample[] = [];
  const users: Sample[] = [];
  for (const [name, b] of app.backends) {
    const stats = (b as { stats?: unknown }).stats;
    if (stats && typeof stats === 'object') {
      for (const [k, v] of Object.entries(stats as Record<string, unknown>)) if (typeof v === 'number') backendSamples.push([{ backend: name, stat: k }, v]);
    }
    const size = (b as { size?: unknown }).size;
    if (typeof size === 'number') users.push([{ backend: name }, size]);
  }
  metric('sipledger_backend_stat_total', 'counter', 'Credential backend counters (mysql: queries, cacheHits; radius: requests, retransmissions, failovers, timeouts, ...)', backendSamples);
  metric('sipledger_backend_users', 'gauge', 'Subscribers loaded by in-memory backends', users);

  // --- process
  const mem = process.memoryUsage();
  metric('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes', [[{}, mem.rss]]);
  metric('process_heap_bytes', 'gauge', 'V8 heap used in bytes', [[{}, mem.heapUsed]]);
  metric('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, in seconds', [[{}, Math.round(app.startedAt / 1000)]]);
  // --- latency histograms (seconds) and the log's group commit
  lines.push('# HELP sipledger_backend_latency_seconds Credential lookup or digest check latency, by backend', '# TYPE sipledger_backend_latency_seconds histogram');
  for (const [backend, h] of app.latency.backends) lines.push(...h.render('sipledger_backend_latency_seconds', { backend }));
  lines.push('# HELP sipledger_log_append_latency_seconds Time from append to durable and applied (the wait before a 200 OK to REGISTER)', '# TYPE sipledger_log_append_latency_seconds histogram');
  lines.push(...app.latency.append.render('sipledger_log_append_latency_seconds'));
  const ls = app.logStats?.();
  if (ls && ls['groups'] !== undefined) {
    metric('sipledger_log_fsync_groups_total', 'counter', 'Group commits written (one write and one fsync each under fsync=batch)', [[{}, ls['groups']]]);
    metric('sipledger_log_appends_total', 'counter', 'Appends that joined a group commit', [[{}, ls['appends'] ?? 0]]);
    metric('sipledger_log_fsync_batch_size', 'gauge', 'Mean appends per group commit since start', [[{}, ls['groups'] ? (ls['appends'] ?? 0) / ls['groups'] : 0]]);
  }
  return lines.join('\n') + '\n';
}

function fileLogEnd(dir: string): number | undefined {
  try {
    const segs = listSegments(dir);
    const last = segs[segs.length - 1];
    if (!last) return 0;
    // The size now, not when the segments were listed: the lag must never read negative.
    return last.base + statSync(last.file).size;
  } catch {
    return undefined;
  }
}
