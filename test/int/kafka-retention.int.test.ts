/**
 * Retention on a shared topic: when the broker has deleted records that follow a snapshot's position,
 * the snapshot is discarded and the instance replays what the topic still holds (the state any new
 * instance would build), instead of applying the rest on top of a hole. The test broker keeps about
 * 5 MiB per partition and drops older batches, which is what time or size retention does on a real
 * Kafka: writing past that moves the partition's earliest offset.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { KafkaLog } from '../../src/backends/log/kafka-log.js';
import { Ledger } from '../../src/core/log/ledger.js';
import { covers, type LogPosition } from '../../src/core/log/event-log.js';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';
import { bound, T0 } from '../support/log-fixtures.js';

let broker: KafkaBroker;

beforeAll(async () => {
  broker = await startKafkaBroker();
});
afterAll(async () => {
  await broker?.stop();
});

function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

/** Writes ~4.5 KiB events for one AOR (one partition) until retention has moved that partition's start. */
async function floodUntilTruncated(log: KafkaLog): Promise<{ partition: string; written: number }> {
  const userAgent = 'x'.repeat(4000);
  let written = 0;
  for (let round = 0; round < 40; round++) {
    const batch = Array.from({ length: 200 }, (_, i) => bound('flood', written + i, T0 + 10_000 + written + i, { userAgent }));
    await log.append(batch);
    written += batch.length;
    const moved = Object.entries(await log.earliest()).find(([, low]) => low > 0);
    if (moved) return { partition: moved[0], written };
  }
  throw new Error(`the broker kept every record after ${written} large events; no retention to test`);
}

describe('KafkaLog retention and snapshots', () => {
  it('discards a snapshot whose successors were deleted, and replays what the topic still holds', async () => {
    const topic = `sipledger-retention-${randomUUID()}`;
    const snapshotDir = await mkdtemp(path.join(tmpdir(), 'sipledger-kafka-retention-'));
    const quiet = pino({ level: 'silent' });
    try {
      const first = await Ledger.open({ log: await KafkaLog.open({ brokers: broker.brokers, topic, clientId: 'a', logger: quiet }), logger: quiet, snapshotDir });
      await first.append([bound('alice', 1, T0), bound('bob', 2, T0)]);
      await first.snapshot();
      const snapshotPosition: LogPosition = first.position;
      await first.close();

      const writer = await KafkaLog.open({ brokers: broker.brokers, topic, clientId: 'writer', logger: quiet });
      let end: LogPosition;
      let earliest: LogPosition;
      let truncated: string;
      try {
        ({ partition: truncated } = await floodUntilTruncated(writer));
        end = await writer.end();
        earliest = await writer.earliest();
      } finally {
        await writer.close();
      }
      expect(covers(snapshotPosition, earliest)).toBe(false);
      expect(earliest[truncated]).toBeGreaterThan(0);

      const { logger, lines } = capturingLogger();
      const again = await Ledger.open({ log: await KafkaLog.open({ brokers: broker.brokers, topic, clientId: 'a', logger }), logger, snapshotDir });
      try {
        expect(again.ready).toBe(true);
        expect(lines).toContainEqual(expect.objectContaining({ msg: 'snapshot ignored, replaying the whole log', why: expect.stringMatching(/retention/) }));
        // Every retained record was replayed (the snapshot contributed nothing): exactly end - earliest.
        const retained = Object.entries(end).reduce((n, [p, high]) => n + high - (earliest[p] ?? 0), 0);
        expect(again.appliedCount).toBe(retained);
        expect(covers(again.position, end)).toBe(true);
        // The flood user's newest binding survived retention and is in the rebuilt projection.
        expect(again.location.bindings('sip:flood@example.com', T0 + 20_000).length).toBeGreaterThan(0);
      } finally {
        await again.close();
      }
    } finally {
      await rm(snapshotDir, { recursive: true, force: true });
    }
  });

  it('a read from before the earliest offset is logged and continues at the earliest record', async () => {
    const topic = `sipledger-retention-read-${randomUUID()}`;
    const { logger, lines } = capturingLogger();
    const log = await KafkaLog.open({ brokers: broker.brokers, topic, clientId: 'reader', logger });
    try {
      const { partition } = await floodUntilTruncated(log);
      const earliest = await log.earliest();
      const low = earliest[partition]!;
      let first: LogPosition | undefined;
      for await (const record of log.read({ [partition]: 0 }, { limit: 1 })) first = record.position;
      expect(first?.[partition]).toBe(low + 1);
      expect(lines).toContainEqual(
        expect.objectContaining({ msg: expect.stringMatching(/retention deleted records/), lost: expect.objectContaining({ [partition]: low }) }),
      );
    } finally {
      await log.close();
    }
  });
});
