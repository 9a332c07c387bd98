/**
 * The behaviour every EventLog must have, as one suite run against each implementation
 * (test/contract/event-log.contract.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { covers, LogError, type EventLog, type LogPosition, type LogRecord } from '../../src/core/log/event-log.js';
import { partitionKey, type SipledgerEvent } from '../../src/core/log/events.js';
import { bound, failure, oneOfEach, T0 } from './log-fixtures.js';

export interface LogUnderTest {
  readonly log: EventLog;
  /** Closes the log and opens it again on the same storage; absent for logs without storage. */
  reopen?(): Promise<EventLog>;
  /** A second, independent writer on the same storage; absent for single-writer logs. */
  otherWriter?(): Promise<EventLog>;
  cleanup(): Promise<void>;
}

export interface ContractOptions {
  /** Memory and file logs keep one total order; Kafka only orders per partition key. */
  readonly totalOrder: boolean;
  /** How long tail deliveries may take to show up (Kafka consumer group start-up). */
  readonly settleMs?: number;
  /** Where to cut a 30-record log for the read-from-position test (each read of Kafka costs a group join). */
  readonly readPoints?: readonly number[];
}

async function readAll(log: EventLog, from: LogPosition | 'start' = 'start'): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const r of log.read(from)) out.push(r);
  return out;
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function perKey(events: readonly SipledgerEvent[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const e of events) {
    const k = partitionKey(e);
    m.set(k, [...(m.get(k) ?? []), e.id]);
  }
  return m;
}

function batchOf(n: number, prefix: string, time = T0): SipledgerEvent[] {
  return Array.from({ length: n }, (_, i) => bound(`${prefix}${i % 5}`, i, time + i));
}

export function eventLogContract(name: string, make: () => Promise<LogUnderTest>, opts: ContractOptions): void {
  const settle = opts.settleMs ?? 2000;
  const check = (written: SipledgerEvent[], read: SipledgerEvent[]): void => {
    expect(read.map((e) => e.id).sort()).toEqual(written.map((e) => e.id).sort());
    if (opts.totalOrder) expect(read.map((e) => e.id)).toEqual(written.map((e) => e.id));
    else expect(perKey(read)).toEqual(perKey(written));
  };

  describe(`EventLog contract: ${name}`, () => {
    it('reads back every appended event exactly once, equal to what was written, in order', async () => {
      const t = await make();
      try {
        const first = [...oneOfEach(), failure(undefined, '203.0.113.1', 'malformed', T0)];
        const second = batchOf(20, 'a');
        const r1 = await t.log.append(first);
        const r2 = await t.log.append(second);
        const records = await readAll(t.log);
        check([...first, ...second], records.map((r) => r.event));
        expect(records.find((r) => r.event.id === first[0]!.id)!.event).toEqual(first[0]);
        const end = await t.log.end();
        expect(covers(end, r1.position) && covers(end, r2.position)).toBe(true);
        expect(covers(records[records.length - 1]!.position, records[0]!.position)).toBe(true);
      } finally {
        await t.cleanup();
      }
    });

    it('a read from the position after k records yields exactly the rest', async () => {
      const t = await make();
      try {
        const written = batchOf(30, 'b');
        await t.log.append(written.slice(0, 10));
        await t.log.append(written.slice(10));
        const all = await readAll(t.log);
        for (const k of opts.readPoints ?? [0, 1, 17, 29, 30]) {
          const from = k === 0 ? 'start' : all[k - 1]!.position;
          const rest = await readAll(t.log, from);
          expect(rest.map((r) => r.event.id).sort()).toEqual(all.slice(k).map((r) => r.event.id).sort());
        }
        const limited: LogRecord[] = [];
        for await (const r of t.log.read('start', { limit: 3 })) limited.push(r);
        expect(limited).toHaveLength(3);
      } finally {
        await t.cleanup();
      }
    });

    it('concurrent appends all resolve, each with a position the end covers', async () => {
      const t = await make();
      try {
        const batches = Array.from({ length: 25 }, (_, i) => batchOf(1 + (i % 4), `c${i}-`));
        const results = await Promise.all(batches.map((b) => t.log.append(b)));
        const end = await t.log.end();
        for (const r of results) expect(covers(end, r.position)).toBe(true);
        const read = (await readAll(t.log)).map((r) => r.event);
        expect(read.map((e) => e.id).sort()).toEqual(batches.flat().map((e) => e.id).sort());
        // A batch keeps its order within each partition key.
        for (const b of batches) {
          const ids = new Set(b.map((e) => e.id));
          expect(perKey(read.filter((e) => ids.has(e.id)))).toEqual(perKey(b));
        }
      } finally {
        await t.cleanup();
      }
    });

    it('tail delivers the existing records, then records appended later, once each', async () => {
      const t = await make();
      try {
        const before = batchOf(5, 'd');
        await t.log.append(before);
        const seen: SipledgerEvent[] = [];
        const sub = t.log.tail('start', (r) => {
          seen.push(r.event);
        });
        await until(() => seen.length >= 5, settle + 5000);
        const after = batchOf(7, 'e');
        await t.log.append(after.slice(0, 3));
        await t.log.append(after.slice(3));
        await until(() => seen.length >= 12, settle + 5000);
        await sub.close();
        check([...before, ...after], seen);
        const late = batchOf(2, 'f');
        await t.log.append(late);
        await new Promise((r) => setTimeout(r, 100));
        expect(seen).toHaveLength(12);
      } finally {
        await t.cleanup();
      }
    });

    it('tail from a position starts after it', async () => {
      const t = await make();
      try {
        const written = batchOf(6, 'g');
        await t.log.append(written.slice(0, 4));
        const all = await readAll(t.log);
        await t.log.append(written.slice(4));
        const seen: SipledgerEvent[] = [];
        const sub = t.log.tail(all[all.length - 1]!.position, (r) => {
          seen.push(r.event);
        });
        await until(() => seen.length >= 2, settle + 5000);
        await new Promise((r) => setTimeout(r, 100));
        await sub.close();
        check(written.slice(4), seen);
      } finally {
        await t.cleanup();
      }
    });

    it('deferrable appends resolve once readable and keep their order with the appends around them', async () => {
      const t = await make();
      try {
        const d1 = batchOf(3, 'd');
        const u = batchOf(2, 'u');
        const d2 = batchOf(2, 'e');
        const results = await Promise.all([t.log.append(d1, { deferrable: true }), t.log.append(u), t.log.append(d2, { deferrable: true })]);
        const end = await t.log.end();
        for (const r of results) expect(covers(end, r.position)).toBe(true);
        check([...d1, ...u, ...d2], (await readAll(t.log)).map((r) => r.event));
        // One alone, with nothing else to wait for, still resolves (once its linger is over).
        const alone = batchOf(1, 'f');
        await t.log.append(alone, { deferrable: true });
        check([...d1, ...u, ...d2, ...alone], (await readAll(t.log)).map((r) => r.event));
      } finally {
        await t.cleanup();
      }
    });

    it('close writes a deferrable append that is still waiting, and it is there after reopening', async () => {
      const t = await make();
      try {
        const written = batchOf(2, 'g');
        const appended = t.log.append(written, { deferrable: true });
        if (!t.reopen) {
          await appended;
          check(written, (await readAll(t.log)).map((r) => r.event));
          return;
        }
        const again = await t.reopen();
        await appended;
        check(written, (await readAll(again)).map((r) => r.event));
      } finally {
        await t.cleanup();
      }
    });

    it('rejects appends after close with a LogError', async () => {
      const t = await make();
      try {
        await t.log.close();
        const err = await t.log.append(batchOf(1, 'h')).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LogError);
        expect(err).toMatchObject({ code: 'LOG_CLOSED', retriable: false });
      } finally {
        await t.cleanup();
      }
    });

    it('keeps everything across close and reopen', async () => {
      const t = await make();
      try {
        if (!t.reopen) {
          expect(t.log.identity).toMatch(/^memory:/);
          return;
        }
        const written = batchOf(12, 'i');
        await t.log.append(written);
        const identity = t.log.identity;
        const again = await t.reopen();
        expect(again.identity).toBe(identity);
        check(written, (await readAll(again)).map((r) => r.event));
        const more = batchOf(3, 'j');
        await again.append(more);
        check([...written, ...more], (await readAll(again)).map((r) => r.event));
      } finally {
        await t.cleanup();
      }
    });

    it('tail sees events appended by another writer on the same log', async () => {
      const t = await make();
      try {
        if (!t.otherWriter) {
          expect(opts.totalOrder).toBe(true); // single-writer logs: memory and file
          return;
        }
        const seen: SipledgerEvent[] = [];
        const sub = t.log.tail('start', (r) => {
          seen.push(r.event);
        });
        const other = await t.otherWriter();
        const written = batchOf(4, 'k');
        await other.append(written);
        await until(() => seen.length >= 4, settle + 10_000);
        await sub.close();
        await other.close();
        check(written, seen);
      } finally {
        await t.cleanup();
      }
    });
  });
}
