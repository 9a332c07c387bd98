import { describe, expect, it } from 'vitest';
import {
  authSucceeded,
  banAdded,
  banRemoved,
  callAnswered,
  callAttempted,
  callEnded,
  callRouted,
  type SipledgerEvent,
} from '../../src/core/log/events.js';
import { AuditProjection } from '../../src/projections/audit.js';
import { CallsProjection } from '../../src/projections/calls.js';
import { failure, T0 } from '../support/log-fixtures.js';

const MIN = 60_000;

function audit(events: SipledgerEvent[], capacity?: number): AuditProjection {
  const p = new AuditProjection(capacity === undefined ? {} : { capacity });
  for (const e of events) p.apply(e);
  return p;
}

describe('audit projection', () => {
  const events = [
    failure('alice', '203.0.113.7', 'bad_password', T0),
    failure('alice', '203.0.113.7', 'bad_password', T0 + 1 * MIN),
    failure('bob', '203.0.113.7', 'unknown_user', T0 + 2 * MIN),
    failure('alice', '198.51.100.2', 'stale_nonce', T0 + 3 * MIN),
    failure(undefined, '203.0.113.7', 'malformed', T0 + 4 * MIN),
  ];

  it('answers failed attempts by user, by IP and by cause within a window, most recent first', () => {
    const p = audit(events);
    expect(p.failures({ since: T0, user: 'alice' }).map((f) => f.time)).toEqual([T0 + 3 * MIN, T0 + MIN, T0]);
    expect(p.failures({ since: T0 + MIN, ip: '203.0.113.7' }).map((f) => f.cause)).toEqual(['malformed', 'unknown_user', 'bad_password']);
    expect(p.failures({ since: T0, until: T0 + 2 * MIN, cause: 'bad_password' })).toHaveLength(2);
    expect(p.failures({ since: T0, user: 'alice', ip: '203.0.113.7' })).toHaveLength(2);
    expect(p.failures({ since: T0, limit: 2 }).map((f) => f.time)).toEqual([T0 + 4 * MIN, T0 + 3 * MIN]);
    expect(p.failures({ since: T0, user: 'nobody' })).toEqual([]);
    expect(p.failures({ since: T0 })[0]).toMatchObject({ ip: '203.0.113.7', port: 5060, transport: 'udp', realm: 'example.com' });
    expect(p.countFailures({ since: T0, ip: '203.0.113.7' })).toBe(4);
  });

  it('counts per user, per IP and per cause over a window, highest first', () => {
    const p = audit(events);
    expect(p.countByIp({ since: T0 })).toEqual([
      { key: '203.0.113.7', count: 4 },
      { key: '198.51.100.2', count: 1 },
    ]);
    expect(p.countByUser({ since: T0 + 2 * MIN })).toEqual([
      { key: 'alice', count: 1 },
      { key: 'bob', count: 1 },
    ]);
    expect(p.countByCause({ since: T0, until: T0 + 2 * MIN })).toEqual([{ key: 'bad_password', count: 2 }]);
    expect(p.totals()).toEqual({ succeeded: 0, failed: { bad_password: 2, unknown_user: 1, stale_nonce: 1, malformed: 1 } });
  });

  it('keeps the most recent attempts up to its capacity, with indexes that follow evictions', () => {
    const many = Array.from({ length: 25 }, (_, i) => failure(i % 2 ? 'alice' : 'bob', `192.0.2.${i % 3}`, 'bad_password', T0 + i));
    const p = audit(many, 10);
    expect(p.failures({ since: 0 })).toHaveLength(10);
    expect(p.failures({ since: 0, user: 'alice' }).map((f) => f.time)).toEqual([T0 + 23, T0 + 21, T0 + 19, T0 + 17, T0 + 15]);
    expect(p.countByIp({ since: 0 }).reduce((n, k) => n + k.count, 0)).toBe(10);
    expect(p.totals().failed.bad_password).toBe(25);
    const q = new AuditProjection({ capacity: 10 });
    q.restore(JSON.parse(JSON.stringify(p.toSnapshot())));
    expect(q.failures({ since: 0, ip: '192.0.2.1' })).toEqual(p.failures({ since: 0, ip: '192.0.2.1' }));
    expect(() => new AuditProjection({ capacity: 11 }).restore(p.toSnapshot())).toThrow(/capacity/);
  });

  it('records the last success per user and bans in force at a given time', () => {
    const source = { address: '192.0.2.1', port: 5060, transport: 'tcp' as const };
    const p = audit([
      authSucceeded({ user: 'alice', realm: 'example.com', domain: 'example.com', method: 'REGISTER', source, algorithm: 'MD5' }, { time: T0 }),
      banAdded({ scope: 'ip', value: '203.0.113.7', until: T0 + 10 * MIN, reason: '20 failures in 1 min' }, { time: T0 }),
      banAdded({ scope: 'user', value: 'bob@example.com', until: T0 + 10 * MIN, reason: 'admin' }, { time: T0 }),
      banRemoved({ scope: 'user', value: 'bob@example.com' }, { time: T0 + MIN }),
    ]);
    expect(p.lastSuccess('alice', 'example.com')).toMatchObject({ time: T0, source });
    expect(p.totals().succeeded).toBe(1);
    expect(p.banned('ip', '203.0.113.7', T0 + 5 * MIN)).toMatchObject({ reason: '20 failures in 1 min', since: T0 });
    expect(p.banned('ip', '203.0.113.7', T0 + 10 * MIN)).toBeUndefined();
    expect(p.banned('user', 'bob@example.com', T0 + 2 * MIN)).toBeUndefined();
    expect(p.bans(T0 + 2 * MIN).map((b) => b.value)).toEqual(['203.0.113.7']);
    p.truncate();
    expect(p.bans(T0)).toEqual([]);
  });
});

describe('calls projection', () => {
  const source = { address: '192.0.2.1', port: 5060, transport: 'udp' as const };
  const attempt = (callId: string, time: number): SipledgerEvent =>
    callAttempted({ callId, from: 'sip:alice@example.com', to: 'sip:bob@example.com', requestUri: 'sip:bob@example.com', source }, { time });

  it('follows a call from attempt to end', () => {
    const p = new CallsProjection();
    for (const e of [
      attempt('c1', T0),
      callRouted({ callId: 'c1', targets: ['sip:bob@10.0.0.2'] }, { time: T0 + 1 }),
      callAnswered({ callId: 'c1', status: 200 }, { time: T0 + 2 }),
    ])
      p.apply(e);
    expect(p.active().map((c) => c.callId)).toEqual(['c1']);
    p.apply(callEnded({ callId: 'c1', by: 'callee' }, { time: T0 + 9 }));
    expect(p.get('c1')).toMatchObject({ state: 'ended', status: 200, targets: ['sip:bob@10.0.0.2'], attemptedAt: T0, endedAt: T0 + 9, endedBy: 'callee' });
    expect(p.active()).toEqual([]);
  });

  it('never moves a call back to an earlier state when events arrive out of order', () => {
    const p = new CallsProjection();
    p.apply(callAnswered({ callId: 'c2', status: 200 }, { time: T0 + 2 }));
    p.apply(attempt('c2', T0));
    expect(p.get('c2')).toMatchObject({ state: 'answered', from: 'sip:alice@example.com' });
  });

  it('keeps the most recent calls up to its capacity, newest first', () => {
    const p = new CallsProjection({ capacity: 3 });
    for (let i = 0; i < 5; i++) p.apply(attempt(`c${i}`, T0 + i));
    expect(p.recent().map((c) => c.callId)).toEqual(['c4', 'c3', 'c2']);
    expect(p.recent(1).map((c) => c.callId)).toEqual(['c4']);
    expect(p.size).toBe(3);
  });
});
