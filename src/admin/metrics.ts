import type { Sipledger } from '../app.js';

/** Prometheus text exposition of sipledger's counters and gauges. */
export function renderMetrics(app: Sipledger, now: number): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: Array<[Record<string, string>, number]>): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const r = app.router.stats;
  metric('sipledger_requests_total', 'counter', 'SIP requests handled, by method', Object.entries(r.requests).map(([m, v]) => [{ method: m }, v]));
  metric(
    'sipledger_responses_total',
    'counter',
    'SIP responses sent, by request method and status',
    Object.entries(r.responses).map(([k, v]) => {
      const [method, code] = k.split(' ');
      return [{ method: method!, code: code! }, v];
    }),
  );
  metric('sipledger_auth_outcomes_total', 'counter', 'Authentication outcomes, by outcome', Object.entries(r.authOutcomes).map(([o, v]) => [{ outcome: o }, v]));
  metric('sipledger_registrations_total', 'counter', 'REGISTER requests accepted and made durable', [[{}, r.registrations]]);
  metric('sipledger_event_append_failures_total', 'counter', 'Event appends that failed', [[{}, r.appendFailures]]);
  metric('sipledger_live_contacts', 'gauge', 'Live contacts in the location projection', [[{}, app.ledger.location.count(now)]]);
  const t = app.transactions.stats as unknown as Record<string, number>;
  metric(
    'sipledger_transactions',
    'gauge',
    'Transaction layer counters',
    Object.entries(t)
      .filter(([, v]) => typeof v === 'number')
      .map(([k, v]) => [{ stat: k }, v]),
  );
  metric('sipledger_ready', 'gauge', '1 when the projections have caught up with the log', [[{}, app.ledger.ready ? 1 : 0]]);
  return lines.join('\n') + '\n';
}
