import { describe, expect, it } from 'vitest';
import { contactRefreshed, contactRemoved, type SipledgerEvent } from '../../src/core/log/events.js';
import { LocationProjection } from '../../src/projections/location.js';
import { bound, T0 } from '../support/log-fixtures.js';

function given(events: SipledgerEvent[]): LocationProjection {
  const p = new LocationProjection();
  for (const e of events) p.apply(e);
  return p;
}

const AOR = 'sip:alice@example.com';

describe('location projection', () => {
  it('a bound contact is live until its expiresAt, then gone without any event', () => {
    const p = given([bound('alice', 1, T0, { expiresAt: T0 + 60_000 })]);
    expect(p.bindings(AOR, T0 + 59_999).map((b) => b.uri)).toEqual(['sip:alice@10.0.0.1:5060;transport=udp']);
    expect(p.bindings(AOR, T0 + 60_000)).toEqual([]);
    expect(p.count(T0)).toBe(1);
    expect(p.count(T0 + 60_000)).toBe(0);
    expect(p.aors(T0)).toEqual([AOR]);
    expect(p.aors(T0 + 60_000)).toEqual([]);
  });

  it('a refresh of the same contact URI updates it in place and keeps the first bind time', () => {
    const first = bound('alice', 1, T0, { expiresAt: T0 + 60_000 });
    const refresh = contactRefreshed({ ...bound('alice', 1, T0 + 30_000), expiresAt: T0 + 90_000, cseq: 7 }, { time: T0 + 30_000 });
    const [b, ...rest] = given([first, refresh]).bindings(AOR, T0 + 70_000);
    expect(rest).toEqual([]);
    expect(b).toMatchObject({ boundAt: T0, updatedAt: T0 + 30_000, cseq: 7, expiresAt: T0 + 90_000 });
    expect(b).not.toHaveProperty('type');
    expect(b).not.toHaveProperty('id');
  });

  it('with +sip.instance and reg-id, a new contact URI replaces the flow (RFC 5626 key)', () => {
    const instanceId = '<urn:uuid:00000000-0000-1000-8000-000a95a0e128>';
    const p = given([
      bound('alice', 1, T0, { instanceId, regId: 1 }),
      bound('alice', 2, T0 + 1000, { instanceId, regId: 1 }),
      bound('alice', 3, T0 + 2000, { instanceId, regId: 2 }),
    ]);
    expect(p.bindings(AOR, T0 + 3000).map((b) => b.uri)).toEqual([
      'sip:alice@10.0.0.3:5060;transport=udp',
      'sip:alice@10.0.0.2:5060;transport=udp',
    ]);
    expect(p.bindings(AOR, T0 + 3000)[1]!.boundAt).toBe(T0);
  });

  it('orders by q descending, then most recently updated first', () => {
    const p = given([
      bound('alice', 1, T0, { q: 0.5 }),
      bound('alice', 2, T0 + 1, { q: 1 }),
      bound('alice', 3, T0 + 2, { q: 0.5 }),
    ]);
    expect(p.bindings(AOR, T0 + 10).map((b) => b.cseq)).toEqual([3, 4, 2]);
  });

  it('contact.removed deletes the binding with that URI and leaves the others', () => {
    const a = bound('alice', 1, T0);
    const b = bound('alice', 2, T0);
    const p = given([a, b, contactRemoved({ aor: AOR, uri: a.uri, callId: a.callId, cseq: 3, reason: 'unregistered' }, { time: T0 + 5 })]);
    expect(p.bindings(AOR, T0 + 10).map((x) => x.uri)).toEqual([b.uri]);
    expect(p.bindings('sip:bob@example.com', T0)).toEqual([]);
  });

  it('forgets lapsed bindings in memory but never changes an answer', () => {
    const p = given([bound('alice', 1, T0, { expiresAt: T0 + 1000 }), bound('alice', 2, T0 + 3_600_000)]);
    expect(p.toSnapshot().bindings.map((b) => b.uri)).toEqual(['sip:alice@10.0.0.2:5060;transport=udp']);
    expect(p.bindings(AOR, T0 + 3_600_000).map((b) => b.cseq)).toEqual([3]);
  });

  it('truncates to empty and restores from its own snapshot', () => {
    const p = given([bound('alice', 1, T0), bound('bob', 2, T0, { aor: 'sip:bob@example.com' })]);
    const q = new LocationProjection();
    q.restore(JSON.parse(JSON.stringify(p.toSnapshot())));
    expect(q.bindings(AOR, T0)).toEqual(p.bindings(AOR, T0));
    expect(q.aors(T0)).toEqual(p.aors(T0));
    p.truncate();
    expect(p.count(T0)).toBe(0);
    expect(() => q.restore({ nope: 1 })).toThrow(/malformed/);
  });
});
