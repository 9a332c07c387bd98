/**
 * Cluster visibility lag: `node --import tsx bench/cluster-lag.ts [--users 1000] [--rate 300] [--count 3000]`
 *
 * Instances share one Kafka topic (the test broker, or KAFKA_BROKERS). Instance A is the real binary
 * (dist/, built first) with the shipped settings. "B" is another instance's ledger (KafkaLog + Ledger,
 * the same path app.ts builds) running in this process, so the moment its projection applies an event
 * can be stamped; two are run side by side: one with the shipped fetch wait (100 ms) and one with
 * 10 ms. SIPp registers `count` times (authenticated REGISTER, `users` distinct AORs, `rate` per
 * second) at A. For each registration, the lag is the time from A's 200 OK (SIPp's receive stamp,
 * -trace_msg) to B applying the binding with that Call-ID. Both stamps are this machine's wall clock.
 * A negative lag means B had the binding before the 200 reached the phone: A answers only once its
 * own tail has read the event back, and B reads the same records at the same time.
 *
 * Why two fetch waits: the test broker (librdkafka's mock) answers a fetch that finds no new record
 * only when the fetch's max wait has passed, even if records arrive meanwhile; Apache Kafka and
 * Redpanda answer a waiting fetch as soon as a record arrives (fetch.min.bytes=1). On the mock, the
 * lag is therefore spread over [0, fetch wait]; the 10 ms reader approximates a broker that wakes
 * fetches on produce.
 *
 * Prints, for a light phase (20/s) and the loaded phase: A's answer time to the authenticated
 * REGISTER (which includes A reading its own event back) and the A-to-B lag percentiles.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { KafkaLog } from '../src/backends/log/kafka-log.js';
import { Ledger } from '../src/core/log/ledger.js';
import { startKafkaBroker } from '../test/support/kafka-broker.js';
import { ROOT, baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../test/support/sipledger-process.js';
import { runSipp } from '../test/support/sipp.js';

const SCENARIO = '/work/shared/bench/sipp/register-auth.xml';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const now = (): number => performance.timeOrigin + performance.now();

interface Exchange {
  sent?: number;
  ok?: number;
}

/**
 * From SIPp's -trace_msg log ("----- 2026-01-01 12:00:00.123456" then "UDP message sent/received"):
 * per Call-ID, when the authenticated REGISTER (CSeq 2) was first sent and its first 200 received.
 */
function exchanges(messagesFile: string): Map<string, Exchange> {
  const out = new Map<string, Exchange>();
  const text = readFileSync(messagesFile, 'utf8');
  for (const block of text.split(/^-{10,} /m)) {
    const head = /^(\d{4})-(\d\d)-(\d\d)\s+(\d\d):(\d\d):(\d\d)(?:\.(\d+))?/.exec(block);
    if (!head || !/^CSeq:\s*2 REGISTER/im.test(block)) continue;
    const callId = /^Call-ID:\s*(\S+)/im.exec(block)?.[1];
    if (!callId) continue;
    const [, y, mo, d, h, mi, sec, frac = '0'] = head;
    const t = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)).getTime() + Number(`0.${frac}`) * 1000;
    const x = out.get(callId) ?? {};
    out.set(callId, x);
    // The first of each counts, not a retransmission.
    if (/message sent/.test(block) && /^REGISTER /m.test(block)) x.sent ??= t;
    else if (/message received/.test(block) && /^SIP\/2\.0 200 /m.test(block)) x.ok ??= t;
  }
  return out;
}

function summary(values: number[]): string {
  if (values.length === 0) return 'none';
  const v = [...values].sort((x, y) => x - y);
  const at = (p: number): string => v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))]!.toFixed(1);
  return `p50 ${at(50)} ms, p90 ${at(90)} ms, p99 ${at(99)} ms, min ${v[0]!.toFixed(1)} ms, max ${v[v.length - 1]!.toFixed(1)} ms (n=${v.length})`;
}

interface Observer {
  readonly name: string;
  readonly ledger: Ledger;
  readonly applied: Map<string, number>;
}

async function observer(name: string, brokers: string[], topic: string, maxWaitTimeInMs: number): Promise<Observer> {
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const ledger = await Ledger.open({ log: await KafkaLog.open({ brokers, topic, clientId: `bench-${name}`, logger, maxWaitTimeInMs }), logger });
  const applied = new Map<string, number>();
  ledger.onEvent((event) => {
    if (event.type !== 'contact.bound' && event.type !== 'contact.refreshed') return;
    if (!applied.has(event.callId)) applied.set(event.callId, now());
  });
  return { name, ledger, applied };
}

async function phase(name: string, a: RunningSipledger, observers: Observer[], users: number, rate: number, count: number, offset: number): Promise<void> {
  const contactPort = await freePort();
  const inf = Array.from({ length: users }, (_, i) => {
    const u = `user${(i + offset) % users}`;
    return `${u};example.com;[authentication username=${u} password=pw-${u}]`;
  });
  const started = now();
  const r = await runSipp({
    scenario: SCENARIO,
    target: `127.0.0.1:${a.sipPort}`,
    inf,
    keys: { contact_hostport: `127.0.0.1:${contactPort}` },
    calls: count,
    rate,
    timeoutMs: Math.ceil((count / rate) * 1000) + 30_000,
    extraArgs: ['-l', String(Math.max(200, rate * 2))],
  });
  const elapsed = (now() - started) / 1000;
  const xs = exchanges(path.join(r.dir, 'messages.log'));
  await rm(r.dir, { recursive: true, force: true });
  // Wait for the observers to have every binding (the lag is what is measured, not this wait).
  const deadline = Date.now() + 5000;
  const done = (): boolean => observers.every((o) => [...xs.keys()].every((c) => xs.get(c)!.ok === undefined || o.applied.has(c)));
  while (!done() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));

  const answer: number[] = [];
  for (const x of xs.values()) if (x.sent !== undefined && x.ok !== undefined) answer.push(x.ok - x.sent);
  const lines = [
    `${name}: ${r.successful} registrations ok, ${r.failed} failed, ${(r.successful / elapsed).toFixed(0)}/s (offered ${rate}/s)`,
    `  A answers the authenticated REGISTER in: ${summary(answer)}`,
  ];
  for (const o of observers) {
    const lags: number[] = [];
    let missing = 0;
    for (const [callId, x] of xs) {
      if (x.ok === undefined) continue;
      const tb = o.applied.get(callId);
      if (tb === undefined) missing++;
      else lags.push(tb - x.ok);
    }
    lines.push(`  A 200 OK -> ${o.name} projection: ${summary(lags)}${missing ? `, ${missing} never seen` : ''}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(): Promise<void> {
  const users = arg('users', 1000);
  const rate = arg('rate', 300);
  const count = arg('count', 3000);
  process.stdout.write('building dist/ ...\n');
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });

  const broker = await startKafkaBroker();
  const topic = `sipledger-lag-${randomUUID()}`;
  let a: RunningSipledger | undefined;
  const observers: Observer[] = [];
  try {
    a = await startSipledger(
      baseConfig(
        {
          instance: 'a',
          backends: { local: { type: 'memory', users: Array.from({ length: users }, (_, i) => ({ username: `user${i}`, password: `pw-user${i}` })) } },
          auth: { secret: 'bench-cluster-secret-0123456789', nonceLifetime: 30 },
          log: { type: 'kafka', brokers: broker.brokers, topic, clientId: 'sipledger-a' },
        },
        await freePort(),
      ),
      { timeoutMs: 60_000 },
    );
    observers.push(...(await Promise.all([observer('B (fetch wait 100 ms)', broker.brokers, topic, 100), observer('B (fetch wait 10 ms)', broker.brokers, topic, 10)])));
    process.stdout.write(`A and two B readers up on ${topic} (brokers ${broker.brokers.join(',')}); ${users} users\n`);
    await phase('light', a, observers, users, 20, 200, 0);
    await phase('load', a, observers, users, rate, count, 200);
  } finally {
    for (const o of observers) await o.ledger.close();
    if (a) {
      await a.stop();
      removeDir(a.dir);
    }
    await broker.stop();
  }
}

await main();
