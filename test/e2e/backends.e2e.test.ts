/**
 * The real proxy authenticating against real credential backends, as small sites and carriers run
 * it: a Kamailio `subscriber` table in MariaDB (created with Kamailio's own schema scripts, rows
 * written the way kamctl writes them) and FreeRADIUS checking the digest (rlm_digest).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSubscriberAdmin } from '../../src/backends/auth/subscriber-admin.js';
import { createLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from '../support/mariadb.js';
import { startFreeRadius, type FreeRadius } from '../support/freeradius.js';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp, startSippServer } from '../support/sipp.js';

const KAMAILIO_MYSQL = '/usr/share/kamailio/mysql';
const OWN_SQL = path.resolve(import.meta.dirname, '..', '..', 'schemas', 'sql');

async function registerAndCall(proxy: RunningSipledger, users: { caller: [string, string]; callee: [string, string] }): Promise<void> {
  const uas = await startSippServer({ scenario: 'uas.xml' });
  try {
    const [callee, calleePassword] = users.callee;
    const reg = await runSipp({
      scenario: 'register.xml',
      target: `127.0.0.1:${proxy.sipPort}`,
      keys: { user: callee, domain: 'example.com', contact: `127.0.0.1:${uas.port}`, expires: '300' },
      auth: { user: callee, password: calleePassword },
    });
    expect(reg.code, reg.errors).toBe(0);
    const [caller, callerPassword] = users.caller;
    const call = await runSipp({
      scenario: 'call.xml',
      target: `127.0.0.1:${proxy.sipPort}`,
      keys: { caller, callee, domain: 'example.com' },
      auth: { user: caller, password: callerPassword },
    });
    expect(call.code, call.errors).toBe(0);
    const seen = await uas.stop();
    expect(seen.successful).toBe(1);
    expect(seen.messages).not.toMatch(/Proxy-Authorization/i);
  } finally {
    await uas.stop();
  }
}

describe('MySQL backend on a Kamailio subscriber table', () => {
  let db: TestDatabase;
  let proxy: RunningSipledger;

  beforeAll(async () => {
    db = await createTestDatabase('sl_e2e');
    // Kamailio's own DDL when the package is installed, else sipledger's equivalent copy.
    const dir = existsSync(path.join(KAMAILIO_MYSQL, 'auth_db-create.sql')) ? KAMAILIO_MYSQL : OWN_SQL;
    await db.sqlFile(path.join(dir, 'standard-create.sql'));
    await db.sqlFile(path.join(dir, 'auth_db-create.sql'));
    const admin = createSubscriberAdmin({ url: db.url, logger: createLogger('silent') });
    try {
      for (const [user, password] of [['alice', 'alice-secret'], ['bob', 'bob-secret']] as const) {
        expect(await admin.addUser({ user, domain: 'example.com', password })).toEqual({ ok: true });
      }
    } finally {
      await admin.close();
    }
    proxy = await startSipledger(
      baseConfig({ backends: { subscribers: { type: 'mysql', url: db.url } }, domains: [{ domain: 'example.com', backend: 'subscribers' }] }, await freePort()),
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    if (proxy) removeDir(proxy.dir);
    await db?.drop();
  });

  it('authenticates a SIPp REGISTER and INVITE against ha1 rows written as kamctl writes them', async () => {
    await registerAndCall(proxy, { caller: ['alice', 'alice-secret'], callee: ['bob', 'bob-secret'] });
  });

  it('answers a wrong password with a new challenge and records bad_password', async () => {
    const r = await runSipp({
      scenario: 'auth-register-wrong-password.xml',
      target: `127.0.0.1:${proxy.sipPort}`,
      keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
      auth: { user: 'alice', password: 'wrong' },
    });
    expect(r.code, r.errors).toBe(0);
  });
});

describe('RADIUS backend on FreeRADIUS (rlm_digest)', () => {
  let radius: FreeRadius;
  let proxy: RunningSipledger;

  beforeAll(async () => {
    radius = await startFreeRadius();
    proxy = await startSipledger(
      baseConfig(
        {
          backends: { carrier: { type: 'radius', servers: [{ host: radius.host, port: radius.port, secret: radius.secret }], timeoutMs: 1500, retries: 0 } },
          domains: [{ domain: 'example.com', backend: 'carrier' }],
        },
        await freePort(),
      ),
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    if (proxy) removeDir(proxy.dir);
    await radius?.stop();
  });

  it('registers and calls with the digest checked by FreeRADIUS (clear-text and HA1-only users)', async () => {
    await registerAndCall(proxy, { caller: ['alice', 'alice-secret'], callee: ['bob', 'bob-secret'] });
    expect(radius.log()).toMatch(/Login OK/);
  });

  it('answers an Access-Reject with a fresh challenge, never a 5xx', async () => {
    const r = await runSipp({
      scenario: 'auth-register-wrong-password.xml',
      target: `127.0.0.1:${proxy.sipPort}`,
      keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
      auth: { user: 'alice', password: 'wrong' },
    });
    expect(r.code, r.errors).toBe(0);
  });

  it('answers 503 with Retry-After, never a challenge, while FreeRADIUS is silent', async () => {
    radius.pause();
    try {
      const scenario = path.join(import.meta.dirname, '..', 'fixtures', 'sipp', 'register.xml');
      const r = await runSipp({
        scenario,
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
        auth: { user: 'alice', password: 'alice-secret' },
        timeoutMs: 15_000,
      });
      // register.xml expects a 200; it fails on the 503, which is what must be sent.
      expect(r.code).not.toBe(0);
      expect(r.messages).toMatch(/SIP\/2\.0 503[^\n]*\n[\s\S]*?Retry-After: \d+/);
      expect((r.messages.match(/SIP\/2\.0 401/g) ?? []).length).toBe(1);
    } finally {
      radius.resume();
    }
  }, 40_000);
});
