import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';
import { runCrashTest } from '../stress/crash-harness.js';

describe('crash safety with the Kafka log (acks=all, idempotent producer)', () => {
  let broker: KafkaBroker;
  beforeAll(async () => {
    broker = await startKafkaBroker();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('sipledger killed with SIGKILL 3 times under SIPp registration load loses no binding SIPp saw acknowledged', async () => {
    // Only sipledger is killed: the test broker keeps nothing across its own restarts.
    const topic = `crash-${randomBytes(4).toString('hex')}`;
    const r = await runCrashTest({ kills: 3, log: { type: 'kafka', brokers: broker.brokers, topic }, rate: 100, upMs: [1500, 3000], onEvent: (m) => console.log(m) });
    console.log(`kills ${r.kills}, registrations offered ${r.registersOffered}, acknowledged ${r.acknowledged}, lost ${r.lost}, bindings after restart ${r.presentAfter}`);
    expect(r.acknowledged).toBeGreaterThan(50);
    expect(r.lostBindings).toEqual([]);
    expect(r.lost).toBe(0);
    expect(r.presentAfter).toBeGreaterThanOrEqual(r.acknowledged);
  }, 60_000);
});
