/**
 * A flood of authenticated REGISTERs for one address of record (a phone in a loop, or a peer with
 * valid credentials) against the real process: registrations of one AOR are decided one at a time,
 * so without a bound every waiting request would stay queued, and be decided long after its phone
 * gave up. Beyond `registrar.maxPendingPerAor` waiting, a REGISTER is answered 503 with Retry-After;
 * every request gets an answer, other AORs keep registering, and the AOR registers again afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { SipUdpClient, answerChallenge, buildRequest, newBranch, type Received } from '../support/sip-udp-client.js';

const MAX_PENDING = 2;
const BURST = 40;

let sl: RunningSipledger;
let c: SipUdpClient;

beforeAll(async () => {
  sl = await startSipledger(baseConfig({ registrar: { maxPendingPerAor: MAX_PENDING }, log: { type: 'file', dir: './data/log', fsync: 'always' } }));
  c = await SipUdpClient.open();
});
afterAll(async () => {
  c?.close();
  await sl?.stop();
  if (sl) removeDir(sl.dir);
});

function register(user: string, o: { authorization?: string; branch?: string; port?: number } = {}): string {
  return buildRequest(
    {
      method: 'REGISTER',
      uri: 'sip:example.com',
      from: `<sip:${user}@example.com>`,
      to: `<sip:${user}@example.com>`,
      contact: `<sip:${user}@127.0.0.1:${o.port ?? 7000}>`,
      ...(o.branch ? { branch: o.branch } : {}),
      headers: ['Expires: 600', ...(o.authorization ? [`Authorization: ${o.authorization}`] : [])],
    },
    c.viaHost,
  );
}

async function challenge(user: string): Promise<string> {
  const r = await c.request(register(user), sl.sipPort);
  expect(r?.status).toBe(401);
  return r!.response!.get('www-authenticate')!;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${sl.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

describe('a flood of authenticated REGISTERs for one AOR', () => {
  it('answers every request, refuses the excess with 503 and Retry-After, and leaves other AORs alone', async () => {
    const aliceChallenge = await challenge('alice');
    const bobChallenge = await challenge('bob');
    const auth = (ch: string, user: string, n: number): string =>
      answerChallenge(ch, { username: user, password: `${user}-secret`, method: 'REGISTER', uri: 'sip:example.com', nc: n.toString(16).padStart(8, '0') });

    // The whole burst leaves in one go: each with its own transaction, Call-ID and nonce count.
    const branches: string[] = [];
    for (let i = 1; i <= BURST; i++) {
      const branch = newBranch();
      branches.push(branch);
      c.send(register('alice', { authorization: auth(aliceChallenge, 'alice', i), branch, port: 7000 + i }), sl.sipPort);
    }
    const bob = await c.request(register('bob', { authorization: auth(bobChallenge, 'bob', 1), port: 7100 }), sl.sipPort);
    expect(bob?.status).toBe(200);

    const answers: Received[] = [];
    for (const branch of branches) {
      const r = await c.waitFor((x) => x.status !== undefined && x.status >= 200 && x.raw.includes(branch), 10_000);
      expect(r, `no final answer for ${branch}`).toBeDefined();
      answers.push(r!);
    }
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 503);
    expect(ok.length + refused.length).toBe(BURST);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    // The burst arrives while the first registration's append is on disk, so nearly all of it finds
    // the queue full; a few may arrive after the queue moved on.
    expect(refused.length).toBeGreaterThanOrEqual(BURST / 2);
    for (const r of refused) expect(r.response!.get('retry-after')).toMatch(/^\d+$/);

    expect(await metric('sipledger_register_queue_full_total')).toBe(refused.length);
    expect(await metric('sipledger_register_waiting')).toBe(0);

    // The AOR takes registrations again once its queue has drained.
    const again = await c.request(register('alice', { authorization: auth(aliceChallenge, 'alice', BURST + 1), port: 7999 }), sl.sipPort);
    expect(again?.status).toBe(200);
  });
});
