/**
 * Kafka unreachable during operation: a binding that cannot be made durable is not acknowledged
 * (REGISTER answered 503, never 200), while calls to users already registered still route.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResponse, parseMessage, serialize } from '../../src/core/sip/index.js';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { SipUdpClient, answerChallenge, buildRequest } from '../support/sip-udp-client.js';

let broker: KafkaBroker;
let sl: RunningSipledger;
let c: SipUdpClient;
let callee: SipUdpClient;

beforeAll(async () => {
  broker = await startKafkaBroker();
  sl = await startSipledger(baseConfig({ log: { type: 'kafka', brokers: broker.brokers, topic: `outage-${randomBytes(4).toString('hex')}` } }), { timeoutMs: 60_000 });
  c = await SipUdpClient.open();
  callee = await SipUdpClient.open();
});
afterAll(async () => {
  c?.close();
  callee?.close();
  await sl?.stop();
  if (sl) removeDir(sl.dir);
  await broker?.stop();
});

async function register(user: string, password: string, contact: string, timeoutMs: number): Promise<number | undefined> {
  const req = (auth?: string): string =>
    buildRequest({ method: 'REGISTER', uri: 'sip:example.com', from: `<sip:${user}@example.com>`, to: `<sip:${user}@example.com>`, contact, headers: ['Expires: 600', ...(auth ? [`Authorization: ${auth}`] : [])] }, c.viaHost);
  const ch = await c.request(req(), sl.sipPort);
  if (ch?.status !== 401) return ch?.status;
  const r = await c.request(req(answerChallenge(ch.response!.get('www-authenticate')!, { username: user, password, method: 'REGISTER', uri: 'sip:example.com' })), sl.sipPort, timeoutMs);
  return r?.status;
}

describe('Kafka unreachable', () => {
  it('REGISTER is answered 503 (never 200) while an INVITE to an already registered user still reaches the phone', async () => {
    expect(await register('bob', 'bob-secret', `<sip:bob@${callee.viaHost}>`, 10_000)).toBe(200);

    await broker.stop();
    const started = Date.now();
    const status = await register('alice', 'alice-secret', `<sip:alice@${c.viaHost}>`, 40_000);
    console.log(`REGISTER with Kafka unreachable answered ${status} after ${Date.now() - started} ms`);
    expect(status).toBe(503);
    const answers = c.received.filter((r) => r.raw.includes('alice@example.com') && r.status === 200 && r.raw.includes('CSeq: 1 REGISTER'));
    expect(answers).toEqual([]);

    // A stranger's call to bob (a served user; no authentication needed to reach him) is relayed.
    c.send(buildRequest({ method: 'INVITE', uri: 'sip:bob@example.com', from: '<sip:caller@example.net>', to: '<sip:bob@example.com>', callId: 'outage-call@test' }, c.viaHost), sl.sipPort);
    const got = await callee.waitFor((r) => r.raw.subarray(0, 7).toString() === 'INVITE ', 10_000);
    expect(got).toBeDefined();
    const parsed = parseMessage(got!.raw);
    if (parsed.ok && parsed.message.isRequest) callee.send(serialize(createResponse(parsed.message, 486)), sl.sipPort);
    expect((await c.waitFor((r) => r.status === 486, 10_000))?.status).toBe(486);
    expect(sl.child.exitCode).toBeNull();
  }, 60_000);
});
