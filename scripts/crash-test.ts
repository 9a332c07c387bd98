/**
 * `npm run test:crash [-- --kills 20 --log file|kafka|both --rate 150]`: the full crash test. Under a
 * SIPp registration load, sipledger is killed with SIGKILL at random moments and restarted on the
 * same data directory and port; every binding SIPp saw acknowledged must be present afterwards.
 * Prints kills, acknowledged bindings and lost bindings per log; exits 1 if any was lost.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { startKafkaBroker } from '../test/support/kafka-broker.js';
import { runCrashTest, type CrashReport } from '../test/stress/crash-harness.js';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '20' },
    log: { type: 'string', default: 'both' },
    rate: { type: 'string', default: '150' },
    seed: { type: 'string' },
  },
});
const kills = Number(values.kills);
const rate = Number(values.rate);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() & 0x7fffffff;
const print = (name: string, r: CrashReport): void => {
  console.log(`${name}: kills ${r.kills}, registrations offered ${r.registersOffered}, acknowledged ${r.acknowledged}, lost ${r.lost}, bindings after the last restart ${r.presentAfter}`);
  for (const l of r.lostBindings) console.log(`  lost: ${l}`);
};
let lost = 0;
console.log(`seed ${seed}`);
if (values.log === 'file' || values.log === 'both') {
  const r = await runCrashTest({ kills, rate, seed, log: { type: 'file' }, onEvent: (m) => console.error(`[file] ${m}`) });
  print('file log (fsync=batch)', r);
  lost += r.lost;
}
if (values.log === 'kafka' || values.log === 'both') {
  const broker = await startKafkaBroker();
  try {
    const topic = `crash-${randomBytes(4).toString('hex')}`;
    const r = await runCrashTest({ kills, rate: Math.min(rate, 100), seed, log: { type: 'kafka', brokers: broker.brokers, topic }, onEvent: (m) => console.error(`[kafka] ${m}`) });
    print('kafka log (acks=all)', r);
    lost += r.lost;
  } finally {
    await broker.stop();
  }
}
process.exit(lost > 0 ? 1 : 0);
