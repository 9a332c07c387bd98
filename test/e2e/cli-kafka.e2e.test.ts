/**
 * The read-side tools on a Kafka event log: a sipledger instance writes to the topic (through the
 * test broker) while `location show`, `audit failed` and `log inspect` read the same topic as
 * separate processes.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

let broker: KafkaBroker;
let server: RunningSipledger;

beforeAll(async () => {
  broker = await startKafkaBroker();
  const topic = `sipledger-cli-${randomBytes(4).toString('hex')}`;
  server = await startSipledger(baseConfig({ instance: 'edge-a', log: { type: 'kafka', brokers: broker.brokers, topic } }), { timeoutMs: 40_000 });
  for (const [user, password, expected] of [
    ['alice', 'alice-secret', 1],
    ['bob', 'wrong', 0],
  ] as const) {
    const r = await runSipp({
      scenario: 'register.xml',
      target: `127.0.0.1:${server.sipPort}`,
      keys: { user, domain: 'example.com', contact: '127.0.0.1:5070', expires: '600' },
      auth: { user, password },
      timeoutMs: 8000,
    });
    expect(r.successful).toBe(expected);
  }
}, 90_000);

afterAll(async () => {
  await server?.kill();
  if (server) removeDir(server.dir);
  await broker?.stop();
});

const cli = (...args: string[]) => runCli([...args, '-c', server.configFile], { cwd: server.dir, timeoutMs: 40_000 });

describe('log tools on a Kafka log', () => {
  it('location show reads the binding from the topic', async () => {
    const r = await cli('location', 'show', '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { log: string; aors: Array<{ aor: string; bindings: Array<{ uri: string; instance?: string }> }> };
    expect(doc.log).toContain('kafka topic');
    expect(doc.aors.map((a) => a.aor)).toEqual(['sip:alice@example.com']);
    expect(doc.aors[0]!.bindings[0]).toMatchObject({ uri: 'sip:alice@127.0.0.1:5070', instance: 'edge-a' });
  });

  it('audit failed and log inspect read the same topic', async () => {
    const audit = JSON.parse((await cli('audit', 'failed', '--json')).stdout) as { total: number; failures: Array<{ user: string; cause: string }> };
    expect(audit.total).toBe(1);
    expect(audit.failures[0]).toMatchObject({ user: 'bob', cause: 'bad_password' });
    const inspect = await cli('log', 'inspect', '--type', 'contact.bound');
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(/contact\.bound\s+sip:alice@example\.com -> sip:alice@127\.0\.0\.1:5070/);
  });

  it('verify is refused for a Kafka log with exit 2 (the brokers check their own CRCs)', async () => {
    const r = await cli('log', 'verify');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Kafka');
  });
});
