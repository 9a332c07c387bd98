/**
 * Several sipledger instances sharing one Kafka topic: each consumes the whole topic into its own
 * projections, so a phone registered through instance A is found through instance B (DESIGN.md,
 * "Scaling out"), and an instance answers from its projection right after its own append returns.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { KafkaLog } from '../../src/backends/log/kafka-log.js';
import { Ledger } from '../../src/core/log/ledger.js';
import type { SipledgerEvent } from '../../src/core/log/events.js';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';
import { bound, failure, T0 } from '../support/log-fixtures.js';

const logger = pino({ level: 'silent' });
let broker: KafkaBroker;

beforeAll(async () => {
  broker = await startKafkaBroker();
});
afterAll(async () => {
  await broker?.stop();
});

async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

describe('Ledger over KafkaLog', () => {
  it('instances share registrations and audit events; a restarted instance rebuilds from a snapshot and the topic', async () => {
    const topic = `sipledger-ledger-${randomUUID()}`;
    const snapshotDir = await mkdtemp(path.join(tmpdir(), 'sipledger-kafka-snap-'));
    const open = async (clientId: string, withSnapshots = false): Promise<Ledger> =>
      Ledger.open({
        log: await KafkaLog.open({ brokers: broker.brokers, topic, clientId, logger }),
        logger,
        ...(withSnapshots && { snapshotDir }),
      });
    const [a, b] = await Promise.all([open('instance-a', true), open('instance-b')]);
    try {
      // Read your writes: A's projection has the binding as soon as append resolves, having read it
      // back from the same stream B consumes.
      await a.append([bound('alice', 1, T0), bound('bob', 2, T0)]);
      expect(a.location.aors(T0)).toEqual(['sip:alice@example.com', 'sip:bob@example.com']);

      const seenByB: SipledgerEvent[] = [];
      b.onEvent((e) => seenByB.push(e));
      await until(() => b.location.count(T0) === 2);
      expect(b.location.bindings('sip:alice@example.com', T0).map((x) => x.uri)).toEqual(['sip:alice@10.0.0.1:5060;transport=udp']);

      await b.append([failure('mallory', '203.0.113.66', 'bad_password', T0 + 1)]);
      expect(b.audit.failures({ since: T0, ip: '203.0.113.66' })).toHaveLength(1);
      await until(() => a.audit.countFailures({ since: T0 }) === 1);
      expect(a.audit.countByUser({ since: T0 })).toEqual([{ key: 'mallory', count: 1 }]);
      expect(seenByB.map((e) => e.type)).toContain('auth.failed');

      await a.snapshot();
      await a.append([bound('carol', 3, T0 + 2)]);
      await a.close();

      const c = await open('instance-a', true);
      try {
        expect(c.ready).toBe(true);
        expect(c.appliedCount).toBe(1);
        expect(c.location.aors(T0)).toEqual(['sip:alice@example.com', 'sip:bob@example.com', 'sip:carol@example.com']);
        expect(c.audit.countFailures({ since: T0 })).toBe(1);
      } finally {
        await c.close();
      }
    } finally {
      await b.close();
      await a.close();
      await rm(snapshotDir, { recursive: true, force: true });
    }
  });

  it('an unreachable broker is an error with a code, not a hang', async () => {
    const err = await KafkaLog.open({ brokers: ['127.0.0.1:1'], topic: 'nowhere', logger }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LOG_BROKER_UNAVAILABLE' });
    expect(typeof (err as { retriable?: unknown }).retriable).toBe('boolean');
  });
});
