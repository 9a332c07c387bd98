/**
 * MySQL down during operation, with a private mariadbd that the test stops and starts: REGISTER is
 * answered 500/503 with Retry-After (never 401: the subscriber is not unknown, the database is), and
 * service comes back by itself when the database does, without a restart. Also the attack
 * catalogue's SQL metacharacters in usernames: no error, just an unknown user.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateMariadb, type PrivateMariadb, type TestDatabase } from '../support/mariadb.js';
import { ROOT, baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { SipUdpClient, answerChallenge, buildRequest } from '../support/sip-udp-client.js';

let server: PrivateMariadb;
let db: TestDatabase;
let sl: RunningSipledger;
let c: SipUdpClient;

beforeAll(async () => {
  server = await startPrivateMariadb();
  db = await server.createDatabase('outage');
  for (const f of ['standard', 'auth_db']) await db.sqlFile(path.join(ROOT, 'schemas', 'sql', `${f}-create.sql`));
  await db.sql("INSERT INTO subscriber (username, domain, password, ha1) VALUES ('alice', 'example.com', 'alice-secret', '')");
  sl = await startSipledger(
    baseConfig({
      backends: { db: { type: 'mysql', host: '127.0.0.1', port: server.port, user: 'root', database: db.name, calculateHa1: true, cacheTtlMs: 0, queryTimeoutMs: 1000 } },
      domains: [{ domain: 'example.com', backend: 'db' }],
      auth: { secret: 'outage-secret-0123456789abcdef', nonceLifetime: 30, lookupTimeoutMs: 1500 },
      retryAfter: 7,
    }),
  );
  c = await SipUdpClient.open();
}, 120_000);
afterAll(async () => {
  c?.close();
  await sl?.stop();
  if (sl) removeDir(sl.dir);
  await db?.drop().catch(() => undefined);
  await server?.destroy();
});

async function register(user: string, password: string): Promise<{ status: number | undefined; retryAfter: string | undefined; ms: number }> {
  const req = (auth?: string): string =>
    // In the URIs the user is %-escaped, as a phone must write it (RFC 3261 s25.1); the digest
    // username, which is what reaches the database, carries it as it is.
    buildRequest({ method: 'REGISTER', uri: 'sip:example.com', from: `<sip:${encodeURIComponent(user)}@example.com>`, to: `<sip:${encodeURIComponent(user)}@example.com>`, contact: `<sip:${encodeURIComponent(user)}@${c.viaHost}>`, headers: ['Expires: 600', ...(auth ? [`Authorization: ${auth}`] : [])] }, c.viaHost);
  const ch = await c.request(req(), sl.sipPort);
  if (ch?.status !== 401) return { status: ch?.status, retryAfter: undefined, ms: 0 };
  const started = Date.now();
  const r = await c.request(req(answerChallenge(ch.response!.get('www-authenticate')!, { username: user, password, method: 'REGISTER', uri: 'sip:example.com' })), sl.sipPort, 10_000);
  return { status: r?.status, retryAfter: r?.response?.get('retry-after'), ms: Date.now() - started };
}

describe('SQL metacharacters in usernames', () => {
  it.each(["alice' OR '1'='1", "alice'; DROP TABLE subscriber; --", "x' UNION SELECT 'a','b','c","\\' OR 1=1 #"])('%s is just an unknown user (401), and the table is intact', async (name) => {
    const r = await register(name, 'whatever');
    expect(r.status).toBe(401);
    const rows = await db.sql<Array<{ n: number }>>('SELECT COUNT(*) AS n FROM subscriber');
    expect(Number(rows[0]!.n)).toBe(1);
  });
});

describe('MySQL down', () => {
  it('REGISTER is answered 503 with Retry-After, never 401, and succeeds again once the database is back, without a restart', async () => {
    expect((await register('alice', 'alice-secret')).status).toBe(200);
    await server.stop();
    const down = await register('alice', 'alice-secret');
    console.log(`REGISTER with MySQL down answered ${down.status} (Retry-After ${down.retryAfter}) after ${down.ms} ms`);
    expect([500, 503]).toContain(down.status);
    expect(down.retryAfter).toBe('7');
    await server.start();
    let back: number | undefined;
    for (let i = 0; i < 20 && back !== 200; i++) {
      back = (await register('alice', 'alice-secret')).status;
      if (back !== 200) await new Promise((r) => setTimeout(r, 500));
    }
    expect(back).toBe(200);
    expect(sl.child.exitCode).toBeNull();
  }, 60_000);
});

describe('MySQL stopped and restarted during a SIPp run', () => {
  it('answers the registrations it cannot check 503 (never a second challenge) and serves again once the database is back', async () => {
    const { runSipp } = await import('../support/sipp.js');
    const run = runSipp({
      scenario: 'register.xml',
      target: `127.0.0.1:${sl.sipPort}`,
      keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '600' },
      auth: { user: 'alice', password: 'alice-secret' },
      calls: 60,
      rate: 10,
      timeoutMs: 40_000,
      // No default behaviours: an aborted call must not send a BYE of its own.
      extraArgs: ['-nd'],
    });
    await new Promise((r) => setTimeout(r, 1500));
    await server.stop();
    await new Promise((r) => setTimeout(r, 2000));
    await server.start();
    const r = await run;
    // Every call met exactly one challenge; the ones that fell into the outage got a 503 instead of
    // a 200, none of them a second 401, and the run went on succeeding after the restart.
    const callsWith = (status: RegExp): Set<string> =>
      new Set(
        r.messages
          .split(/\n-{20,}[^\n]*\n/)
          .filter((block) => status.test(block))
          .map((block) => /Call-ID: ([^\r\n]+)/.exec(block)?.[1] ?? ''),
      );
    expect(callsWith(/SIP\/2\.0 401/).size).toBe(60);
    expect((r.messages.match(/SIP\/2\.0 401/g) ?? []).length).toBe(60);
    const unavailable = callsWith(/SIP\/2\.0 50[03]/).size;
    expect(unavailable).toBeGreaterThan(0);
    expect(r.failed).toBe(unavailable);
    expect(r.successful + r.failed).toBe(60);
    // SIPp numbers its calls: registrations late in the run (after the restart) succeeded.
    const okCalls = [...callsWith(/SIP\/2\.0 200 OK/)].map((id) => Number(id.split('-')[0]));
    expect(Math.max(...okCalls)).toBeGreaterThanOrEqual(55);
    expect(sl.child.exitCode).toBeNull();
  }, 90_000);
});
