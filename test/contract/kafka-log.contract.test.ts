/**
 * The EventLog contract against KafkaLog, on the test broker (librdkafka's mock cluster behind a
 * relay) or on the broker named by KAFKA_BROKERS. A fresh topic per test: the mock keeps ~5 MiB per
 * partition and nothing across restarts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import pino from 'pino';
import { KafkaLog } from '../../src/backends/log/kafka-log.js';
import type { EventLog } from '../../src/core/log/event-log.js';
import { eventLogContract } from '../support/log-contract.js';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';

const logger = pino({ level: 'silent' });
let broker: KafkaBroker;

beforeAll(async () => {
  broker = await startKafkaBroker();
});
afterAll(async () => {
  await broker?.stop();
});

eventLogContract(
  'KafkaLog',
  async () => {
    const topic = `sipledger-contract-${randomUUID()}`;
    const open = (clientId: string): Promise<KafkaLog> => KafkaLog.open({ brokers: broker.brokers, topic, clientId, logger });
    const others: EventLog[] = [];
    let current: EventLog = await open('contract-a');
    return {
      get log() {
        return current;
      },
      reopen: async () => {
        await current.close();
        current = await open('contract-a');
        return current;
      },
      otherWriter: async () => {
        const other = await open('contract-b');
        others.push(other);
        return other;
      },
      cleanup: async () => {
        await current.close();
        for (const o of others) await o.close();
      },
    };
  },
  { totalOrder: false, settleMs: 5000, readPoints: [17, 30] },
);
