/**
 * DESIGN.md contract 1: replaying the whole log into fresh projections gives the same state as
 * applying the events live; and a snapshot plus the tail after it gives that state too.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  authFailed,
  callAnswered,
  callAttempted,
  callEnded,
  callFailed,
  contactBound,
  contactRefreshed,
  contactRemoved,
  AUTH_FAILURE_CAUSES,
  type SipledgerEvent,
} from '../../src/core/log/events.js';
import { Ledger } from '../../src/core/log/ledger.js';
import { MemoryLog } from '../../src/core/log/memory-log.js';
import { T0 } from '../support/log-fixtures.js';

const logger = pino({ level: 'silent' });
const source = { address: '192.0.2.1', port: 5060, transport: 'udp' as const };

const users = ['alice', 'bob', 'carol'];
const arbEvent: fc.Arbitrary<(time: number) => SipledgerEvent> = fc.oneof(
  fc
    .record({
      user: fc.constantFrom(...users),
      host: fc.integer({ min: 1, max: 3 }),
      ttl: fc.integer({ min: -60, max: 7200 }),
      q: fc.constantFrom(0.1, 0.5, 1),
      instance: fc.option(fc.constantFrom('<urn:uuid:a>', '<urn:uuid:b>'), { nil: undefined }),
      regId: fc.option(fc.integer({ min: 1, max: 2 }), { nil: undefined }),
      refresh: fc.boolean(),
    })
    .map((r) => (time: number) => {
      const uri = `sip:${r.user}@10.0.0.${r.host}`;
      const payload = {
        aor: `sip:${r.user}@example.com`,
        contact: `<${uri}>`,
        uri,
        expiresAt: time + r.ttl * 1000,
        q: r.q,
        callId: `reg-${r.user}`,
        cseq: time - T0,
        source,
        ...(r.instance !== undefined && { instanceId: r.instance }),
        ...(r.instance !== undefined && r.regId !== undefined && { regId: r.regId }),
      };
      return r.refresh ? contactRefreshed(payload, { time }) : contactBound(payload, { time });
    }),
  fc
    .record({ user: fc.constantFrom(...users), host: fc.integer({ min: 1, max: 3 }) })
    .map((r) => (time: number) =>
      contactRemoved({ aor: `sip:${r.user}@example.com`, uri: `sip:${r.user}@10.0.0.${r.host}`, callId: 'x', cseq: 1, reason: 'unregistered' }, { time }),
    ),
  fc
    .record({ user: fc.option(fc.constantFrom(...users), { nil: undefined }), ip: fc.constantFrom('203.0.113.1', '203.0.113.2'), cause: fc.constantFrom(...AUTH_FAILURE_CAUSES) })
    .map((r) => (time: number) =>
      authFailed(
        { ...(r.user !== undefined && { user: r.user }), realm: 'example.com', domain: 'example.com', method: 'REGISTER', source: { ...source, address: r.ip }, algorithm: 'MD5', cause: r.cause },
        { time },
      ),
    ),
  fc
    .record({ call: fc.constantFrom('c1', 'c2', 'c3'), step: fc.integer({ min: 0, max: 3 }) })
    .map((r) => (time: number) => {
      switch (r.step) {
        case 0:
          return callAttempted({ callId: r.call, from: 'sip:alice@example.com', to: 'sip:bob@example.com', requestUri: 'sip:bob@example.com', source }, { time });
        case 1:
          return callAnswered({ callId: r.call, status: 200 }, { time });
        case 2:
          return callFailed({ callId: r.call, status: 486 }, { time });
        default:
          return callEnded({ callId: r.call }, { time });
      }
    }),
);

/** Events with non-decreasing times (a few share a millisecond) and a split into append batches. */
const arbHistory = fc
  .array(fc.tuple(arbEvent, fc.integer({ min: 0, max: 120_000 }), fc.boolean()), { minLength: 1, maxLength: 60 })
  .map((steps) => {
    let time = T0;
    const events: SipledgerEvent[] = [];
    const cuts: boolean[] = [];
    for (const [make, gap, cut] of steps) {
      time += gap;
      events.push(make(time));
      cuts.push(cut);
    }
    return { events, cuts };
  });

function stateOf(ledger: Ledger, times: number[]): unknown {
  return {
    location: ledger.location.toSnapshot(),
    audit: ledger.audit.toSnapshot(),
    calls: ledger.calls.toSnapshot(),
    answers: times.map((t) => ({
      aors: ledger.location.aors(t),
      count: ledger.location.count(t),
      alice: ledger.location.bindings('sip:alice@example.com', t),
      byIp: ledger.audit.countByIp({ since: t - 3_600_000 }),
    })),
  };
}

describe('projections replay', () => {
  it('replaying any event sequence into fresh projections equals applying it live, with or without a snapshot', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sipledger-replay-'));
    try {
      await fc.assert(
        fc.asyncProperty(arbHistory, fc.nat(), async ({ events, cuts }, snapAt) => {
          const log = new MemoryLog();
          const snapshotDir = path.join(dir, String(Math.random()).slice(2));
          const live = await Ledger.open({ log, logger, snapshotDir });
          const split = snapAt % (events.length + 1);
          let batch: SipledgerEvent[] = [];
          for (let i = 0; i < events.length; i++) {
            batch.push(events[i]!);
            if (cuts[i] || i === events.length - 1 || i + 1 === split) {
              await live.append(batch);
              batch = [];
            }
            if (i + 1 === split) await live.snapshot();
          }
          const last = events[events.length - 1]!.time;
          const times = [T0, (T0 + last) / 2, last, last + 3_600_000];
          const expected = stateOf(live, times);

          const replayed = await Ledger.open({ log, logger });
          expect(stateOf(replayed, times)).toEqual(expected);
          if (split > 0) {
            const fromSnapshot = await Ledger.open({ log, logger, snapshotDir });
            expect(fromSnapshot.appliedCount).toBe(events.length - split);
            expect(stateOf(fromSnapshot, times)).toEqual(expected);
          }
        }),
        { numRuns: 150 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
