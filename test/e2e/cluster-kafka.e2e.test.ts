/**
 * Several sipledger instances sharing one Kafka topic (DESIGN.md, "Scaling out"): the real binary,
 * SIPp phones, and the test broker. A phone registered through one instance is reached through
 * another; an unregistration at one instance is a 404 at the other; an instance restarts from its
 * snapshot and the topic while its peer keeps serving; a late instance catches up before it is
 * ready; audit events and nonces are shared.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { KafkaLog } from '../../src/backends/log/kafka-log.js';
import { covers, type LogPosition } from '../../src/core/log/event-log.js';
import { startKafkaBroker, type KafkaBroker } from '../support/kafka-broker.js';
import { bound } from '../support/log-fixtures.js';
import { digestResponse } from '../support/digest.js';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp, startSippServer } from '../support/sipp.js';
import { registerScenario, writeScenario } from '../support/sipp-scenarios.js';

interface LocationBody {
  aors: Array<{ aor: string; bindings: Array<{ uri: string }> }>;
}
interface AuditBody {
  failures: Array<{ cause: string; user?: string; ip: string; instance?: string }>;
}
interface ReadyBody {
  ready: boolean;
  position: LogPosition;
  appliedEvents: number;
}

const SECRET = 'cluster-secret-0123456789abcdef';
const quiet = pino({ level: 'silent' });

let broker: KafkaBroker;
let topic: string;
let a: RunningSipledger;
let b: RunningSipledger;
const started: RunningSipledger[] = [];

function instanceConfig(name: string, sipPort: number, adminPort = 0): Record<string, unknown> {
  return baseConfig(
    {
      instance: name,
      backends: {
        local: { type: 'memory', users: ['alice', 'bob', 'carol', 'dave', 'erin'].map((u) => ({ username: u, password: `${u}-secret` })) },
      },
      // User bans after 3 failures; no address bans, since every test phone is on 127.0.0.1.
      security: { bruteForce: { user: { failures: 3, windowSeconds: 300, banSeconds: 300 }, ip: { failures: 0 } } },
      auth: { secret: SECRET, nonceLifetime: 30 },
      log: { type: 'kafka', brokers: broker.brokers, topic, clientId: `sipledger-${name}` },
      snapshots: { dir: './snapshots' },
      admin: { address: '127.0.0.1', port: adminPort },
    },
    sipPort,
  );
}

async function start(name: string, opts: { dir?: string; adminPort?: number; sipPort?: number } = {}): Promise<RunningSipledger> {
  const proc = await startSipledger(instanceConfig(name, opts.sipPort ?? (await freePort()), opts.adminPort), {
    ...(opts.dir !== undefined ? { dir: opts.dir } : {}),
    timeoutMs: 40_000,
  });
  started.push(proc);
  return proc;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

async function bindingsOf(proc: RunningSipledger, user: string): Promise<string[]> {
  const body = await getJson<LocationBody>(`${proc.adminUrl}/location?aor=${encodeURIComponent(`sip:${user}@example.com`)}`);
  return body.aors[0]?.bindings.map((x) => x.uri) ?? [];
}

/** Polls until `cond` holds (another instance consumes the event a few ms after the writer's 200). */
async function eventually(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never happened: ${what}`);
}

function register(proc: RunningSipledger, user: string, contact: string, expires = 300) {
  return runSipp({
    scenario: 'register.xml',
    target: `127.0.0.1:${proc.sipPort}`,
    keys: { user, domain: 'example.com', contact, expires: String(expires) },
    auth: { user, password: `${user}-secret` },
  });
}

function call(proc: RunningSipledger, callee: string, scenario = 'call.xml') {
  return runSipp({
    scenario,
    target: `127.0.0.1:${proc.sipPort}`,
    keys: { caller: 'alice', callee, domain: 'example.com' },
    auth: { user: 'alice', password: 'alice-secret' },
  });
}

// ------------------------------------------------------------------------------------------------
// A phone on a raw UDP socket, for requests SIPp cannot make: a challenge from one instance answered
// to another, and chosen nonce counts.

interface SipAnswer {
  status: number;
  headers: string;
}

class RawPhone {
  readonly #socket = dgram.createSocket('udp4');
  readonly callId = `${randomUUID()}@127.0.0.1`;
  readonly #tag = randomBytes(4).toString('hex');
  #cseq = 0;
  #port = 0;

  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.#socket.bind(0, '127.0.0.1', resolve));
    this.#port = this.#socket.address().port;
  }

  close(): void {
    this.#socket.close();
  }

  /** Sends one REGISTER for `user` (retransmitted every 500 ms, RFC 3261 timer E) and returns the final answer. */
  register(to: RunningSipledger, user: string, authorization?: string): Promise<SipAnswer> {
    const cseq = ++this.#cseq;
    const msg = [
      'REGISTER sip:example.com SIP/2.0',
      `Via: SIP/2.0/UDP 127.0.0.1:${this.#port};branch=z9hG4bK${randomBytes(8).toString('hex')};rport`,
      'Max-Forwards: 70',
      `From: <sip:${user}@example.com>;tag=${this.#tag}`,
      `To: <sip:${user}@example.com>`,
      `Call-ID: ${this.callId}`,
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:${user}@127.0.0.1:${this.#port}>`,
      ...(authorization ? [`Authorization: ${authorization}`] : []),
      'Expires: 300',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    return new Promise((resolve, reject) => {
      const send = (): void => this.#socket.send(msg, to.sipPort, '127.0.0.1');
      const retransmit = setInterval(send, 500);
      const timeout = setTimeout(() => finish(new Error(`no final answer to REGISTER CSeq ${cseq}`)), 8000);
      const onMessage = (buf: Buffer): void => {
        const text = buf.toString('utf8');
        const status = Number(/^SIP\/2\.0 (\d{3})/.exec(text)?.[1]);
        if (status < 200 || !text.includes(this.callId) || !new RegExp(`CSeq: ${cseq} REGISTER`, 'i').test(text)) return;
        finish(undefined, { status, headers: text.split('\r\n\r\n')[0]! });
      };
      const finish = (err: Error | undefined, answer?: SipAnswer): void => {
        clearInterval(retransmit);
        clearTimeout(timeout);
        this.#socket.off('message', onMessage);
        if (err) reject(err);
        else resolve(answer!);
      };
      this.#socket.on('message', onMessage);
      send();
    });
  }
}

function challengeOf(answer: SipAnswer): { realm: string; nonce: string } {
  const md5 = answer.headers.split('\r\n').find((h) => /^WWW-Authenticate:\s*Digest /i.test(h) && !/algorithm=(?!MD5\b)/i.test(h));
  const realm = /realm="([^"]+)"/.exec(md5 ?? '')?.[1];
  const nonce = /nonce="([^"]+)"/.exec(md5 ?? '')?.[1];
  if (!realm || !nonce) throw new Error(`no MD5 challenge in:\n${answer.headers}`);
  return { realm, nonce };
}

function authorization(user: string, realm: string, nonce: string, nc: number): string {
  const ncHex = nc.toString(16).padStart(8, '0');
  const cnonce = randomBytes(8).toString('hex');
  const response = digestResponse({
    username: user,
    realm,
    password: `${user}-secret`,
    method: 'REGISTER',
    uri: 'sip:example.com',
    nonce,
    qop: 'auth',
    nc: ncHex,
    cnonce,
  });
  return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="sip:example.com", response="${response}", algorithm=MD5, qop=auth, nc=${ncHex}, cnonce="${cnonce}"`;
}

// ------------------------------------------------------------------------------------------------

beforeAll(async () => {
  broker = await startKafkaBroker();
  topic = `sipledger-cluster-${randomUUID()}`;
  [a, b] = await Promise.all([start('a'), start('b')]);
}, 60_000);

afterAll(async () => {
  for (const p of started) await p.stop().catch(() => undefined);
  for (const dir of new Set(started.map((p) => p.dir))) removeDir(dir);
  await broker?.stop();
});

describe('two instances on one Kafka topic', () => {
  it('a phone registered at A is called through B', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml' });
    try {
      const reg = await register(a, 'bob', `127.0.0.1:${uas.port}`);
      expect(reg.code, reg.errors).toBe(0);
      await eventually(async () => (await bindingsOf(b, 'bob')).length === 1, "B's projection holds A's binding");
      expect(await bindingsOf(b, 'bob')).toEqual([`sip:bob@127.0.0.1:${uas.port}`]);

      const invite = await call(b, 'bob');
      expect(invite.code, invite.errors).toBe(0);
      const callee = await uas.stop();
      expect(callee.successful).toBe(1);
      expect(callee.messages).toMatch(new RegExp(`Record-Route: <sip:127\\.0\\.0\\.1:${b.sipPort};lr>`));
    } finally {
      await uas.stop();
    }
  });

  it('an unregistration at B reaches A: a call through A gets 404', async () => {
    const contact = (await bindingsOf(a, 'bob'))[0];
    expect(contact).toBeDefined();
    const scenario = writeScenario(registerScenario({ user: 'bob', domain: 'example.com', steps: [{ contact: `<${contact}>`, expires: 0, expect: 200 }] }));
    const unreg = await runSipp({ scenario, target: `127.0.0.1:${b.sipPort}`, auth: { user: 'bob', password: 'bob-secret' } });
    expect(unreg.code, unreg.errors).toBe(0);
    expect(await bindingsOf(b, 'bob')).toEqual([]);
    await eventually(async () => (await bindingsOf(a, 'bob')).length === 0, "A's projection drops the binding removed at B");

    const invite = await call(a, 'bob', 'call-404.xml');
    expect(invite.code, invite.errors).toBe(0);
    expect(invite.messages).toMatch(/SIP\/2\.0 404 User Not Found/);
  });

  it('an authentication failure at A is in B\'s audit trail, with the instance that saw it', async () => {
    const r = await runSipp({
      scenario: 'auth-register-wrong-password.xml',
      target: `127.0.0.1:${a.sipPort}`,
      keys: { user: 'carol', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
      auth: { user: 'carol', password: 'not-her-password' },
    });
    expect(r.code, r.errors).toBe(0);
    const inB = async (): Promise<boolean> =>
      (await getJson<AuditBody>(`${b.adminUrl}/audit?since=1h&cause=bad_password`)).failures.some((f) => f.user === 'carol' && f.instance === 'a');
    await eventually(inB, "B's audit trail shows A's failure");
  });

  it('a nonce issued by A is accepted by B; counts alternating between instances are accepted, a count replayed at one is refused', async () => {
    const phone = new RawPhone();
    await phone.open();
    try {
      const challenge = await phone.register(a, 'dave');
      expect(challenge.status).toBe(401);
      const { realm, nonce } = challengeOf(challenge);

      const atB = await phone.register(b, 'dave', authorization('dave', realm, nonce, 1));
      expect(atB.status, atB.headers).toBe(200);
      const atA = await phone.register(a, 'dave', authorization('dave', realm, nonce, 2));
      expect(atA.status, atA.headers).toBe(200);
      const atB2 = await phone.register(b, 'dave', authorization('dave', realm, nonce, 3));
      expect(atB2.status, atB2.headers).toBe(200);

      // The same count again at the instance that accepted it: a replay (RFC 7616 s3.4).
      const replayed = await phone.register(b, 'dave', authorization('dave', realm, nonce, 3));
      expect(replayed.status).toBe(401);
      expect(replayed.headers).not.toMatch(/stale=true/i);
      await eventually(
        async () => (await getJson<AuditBody>(`${b.adminUrl}/audit?since=1h&cause=nonce_reused`)).failures.some((f) => f.user === 'dave'),
        'the replay is audited',
      );
    } finally {
      phone.close();
    }
  });

  it('failures at both instances add up to a user ban that both enforce', async () => {
    const fail = async (proc: RunningSipledger): Promise<void> => {
      const r = await runSipp({
        scenario: 'auth-register-wrong-password.xml',
        target: `127.0.0.1:${proc.sipPort}`,
        keys: { user: 'erin', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
        auth: { user: 'erin', password: 'guess' },
      });
      expect(r.code, r.errors).toBe(0);
    };
    const failuresIn = async (proc: RunningSipledger): Promise<number> =>
      (await getJson<AuditBody>(`${proc.adminUrl}/audit?since=1h&user=erin`)).failures.length;
    await fail(a);
    await fail(a);
    await eventually(async () => (await failuresIn(b)) === 2, "B has counted A's failures");
    await fail(b); // the third failure, seen at B: the threshold counts the whole cluster's failures

    const phone = new RawPhone();
    await phone.open();
    try {
      for (const proc of [a, b]) {
        let last: SipAnswer | undefined;
        await eventually(async () => (last = await phone.register(proc, 'erin')).status === 403, `erin banned at ${proc === a ? 'A' : 'B'}`);
        expect(last?.headers).toMatch(/^SIP\/2\.0 403 Forbidden \(banned\)/);
      }
    } finally {
      phone.close();
    }
  });

  it('A restarts while B keeps serving, and comes back with what was registered meanwhile', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml', calls: 2 });
    try {
      const dirA = a.dir;
      const portA = a.sipPort;
      expect(await a.stop()).toBe(0);

      // A is down: B keeps registering and routing.
      expect((await register(b, 'carol', `127.0.0.1:${uas.port}`)).code).toBe(0);
      const viaB = await call(b, 'carol');
      expect(viaB.code, viaB.errors).toBe(0);

      a = await start('a', { dir: dirA, sipPort: portA });
      await a.waitForLog((l) => l['msg'] === 'snapshot restored');
      expect(await bindingsOf(a, 'carol')).toEqual([`sip:carol@127.0.0.1:${uas.port}`]);
      const viaA = await call(a, 'carol');
      expect(viaA.code, viaA.errors).toBe(0);
      const callee = await uas.stop();
      expect(callee.successful).toBe(2);
    } finally {
      await uas.stop();
    }
  }, 60_000);

  it('a third instance started late is ready only once caught up, from the topic and then from its own snapshot', async () => {
    const now = Date.now();
    const writer = await KafkaLog.open({ brokers: broker.brokers, topic, clientId: 'backlog', logger: quiet });
    let end: LogPosition;
    try {
      for (let i = 0; i < 2000; i += 500) {
        await writer.append(Array.from({ length: 500 }, (_, k) => bound(`backlog${i + k}`, i + k, now)));
      }
      end = await writer.end();
    } finally {
      await writer.close();
    }

    const adminPort = await freePort();
    const readyUrl = `http://127.0.0.1:${adminPort}/ready`;
    // Poll /ready from before the process exists: until it answers 200, nothing may claim readiness.
    const probes: Array<{ status: number; body?: ReadyBody }> = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          const res = await fetch(readyUrl);
          const body = (await res.json()) as ReadyBody;
          probes.push({ status: res.status, body });
          if (res.status === 200) return;
        } catch {
          probes.push({ status: 0 }); // not listening yet
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    let c = await start('c', { adminPort });
    await poller;
    polling = false;
    const firstReady = probes.find((p) => p.status === 200);
    expect(firstReady?.body?.ready).toBe(true);
    expect(covers(firstReady!.body!.position, end)).toBe(true);
    expect(probes.every((p) => p.status === 0 || p.status === 503 || covers(p.body!.position, end))).toBe(true);
    const all = await getJson<LocationBody>(`${c.adminUrl}/location`);
    expect(all.aors.filter((x) => x.aor.startsWith('sip:backlog')).length).toBe(2000);
    expect(await bindingsOf(c, 'carol')).toHaveLength(1);

    // Restart from its own snapshot: only what was written since is replayed.
    const dirC = c.dir;
    expect(await c.stop()).toBe(0);
    const writer2 = await KafkaLog.open({ brokers: broker.brokers, topic, clientId: 'backlog', logger: quiet });
    try {
      await writer2.append(Array.from({ length: 10 }, (_, k) => bound(`late${k}`, k, now)));
    } finally {
      await writer2.close();
    }
    c = await start('c', { dir: dirC, adminPort });
    await c.waitForLog((l) => l['msg'] === 'snapshot restored');
    const ready = await getJson<ReadyBody>(readyUrl);
    expect(ready.ready).toBe(true);
    expect(ready.appliedEvents).toBe(10);
    expect(await bindingsOf(c, 'late9')).toHaveLength(1);
    expect(await bindingsOf(c, 'backlog1999')).toHaveLength(1);
  }, 60_000);
});
