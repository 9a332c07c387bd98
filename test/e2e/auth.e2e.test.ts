/**
 * Every authentication outcome, as a phone meets it: SIPp against the real sipledger process,
 * with the audit trail (admin API) showing the named cause of each failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp, startSippServer } from '../support/sipp.js';

interface AuditBody {
  failures: Array<{ cause: string; user?: string; ip: string }>;
}

const NONCE_LIFETIME_S = 2;

describe('authentication outcomes through the real proxy', () => {
  let proxy: RunningSipledger;
  let target: string;

  /**
   * The failures of one cause in the audit trail. Failure events are appended after the answer is
   * sent, so this polls briefly until one matching `pred` shows up (or returns what is there).
   */
  async function audit(cause: string, pred: (f: AuditBody['failures'][number]) => boolean): Promise<boolean> {
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${proxy.adminUrl}/audit?since=1h&cause=${cause}`);
      expect(res.status).toBe(200);
      if (((await res.json()) as AuditBody).failures.some(pred)) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  async function authOk(): Promise<number> {
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    return Number(/sipledger_auth_outcomes_total\{outcome="ok"\} (\d+)/.exec(metrics)?.[1] ?? 0);
  }

  beforeAll(async () => {
    proxy = await startSipledger(baseConfig({ auth: { secret: 'test-secret-0123456789abcdef', nonceLifetime: NONCE_LIFETIME_S } }, await freePort()));
    target = `127.0.0.1:${proxy.sipPort}`;
  });

  afterAll(async () => {
    await proxy?.stop();
    removeDir(proxy.dir);
  });

  it('bad_password: a fresh 401 without stale, recorded in the audit trail', async () => {
    const r = await runSipp({
      scenario: 'auth-register-wrong-password.xml',
      target,
      keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
      auth: { user: 'alice', password: 'not-the-password' },
    });
    expect(r.code, r.errors).toBe(0);
    const challenges = r.messages.match(/WWW-Authenticate: [^\n]*/g) ?? [];
    expect(challenges).toHaveLength(2);
    expect(challenges.join('\n')).not.toMatch(/stale=true/i);
    expect(await audit('bad_password', (f) => f.user === 'alice' && f.ip === '127.0.0.1')).toBe(true);
  });

  it('unknown_user: answered exactly like a bad password (no user enumeration)', async () => {
    const r = await runSipp({
      scenario: 'auth-register-wrong-password.xml',
      target,
      keys: { user: 'mallory', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
      auth: { user: 'mallory', password: 'guess' },
    });
    expect(r.code, r.errors).toBe(0);
    expect(await audit('unknown_user', (f) => f.user === 'mallory')).toBe(true);
  });

  it('identity_mismatch on REGISTER: alice cannot register bob (403, no binding)', async () => {
    const r = await runSipp({
      scenario: 'auth-register-spoofed-to.xml',
      target,
      keys: { user: 'alice', victim: 'bob', domain: 'example.com', contact: '127.0.0.1:5998', expires: '300' },
      auth: { user: 'alice', password: 'alice-secret' },
    });
    expect(r.code, r.errors).toBe(0);
    expect(r.messages).toMatch(/SIP\/2\.0 403/);
    const loc = (await (await fetch(`${proxy.adminUrl}/location?aor=${encodeURIComponent('sip:bob@example.com')}`)).json()) as {
      aors: Array<{ bindings: unknown[] }>;
    };
    expect(loc.aors[0]!.bindings).toHaveLength(0);
    expect(await audit('identity_mismatch', (f) => f.user === 'alice')).toBe(true);
  });

  it('identity_mismatch on INVITE: alice cannot call as carol (403, nothing relayed)', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml' });
    try {
      const reg = await runSipp({
        scenario: 'register.xml',
        target,
        keys: { user: 'bob', domain: 'example.com', contact: `127.0.0.1:${uas.port}`, expires: '300' },
        auth: { user: 'bob', password: 'bob-secret' },
      });
      expect(reg.code, reg.errors).toBe(0);
      const r = await runSipp({
        scenario: 'auth-invite-spoofed-from.xml',
        target,
        keys: { victim: 'carol', callee: 'bob', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      expect(r.code, r.errors).toBe(0);
      expect(r.messages).toMatch(/SIP\/2\.0 403/);
      const callee = await uas.stop();
      expect(callee.messages).not.toMatch(/INVITE sip:/);
    } finally {
      await uas.stop();
    }
  });

  it('stale_nonce: an expired nonce with the right password gets stale=true, then the phone registers', async () => {
    const r = await runSipp({
      scenario: 'auth-register-stale-nonce.xml',
      target,
      keys: { user: 'carol', domain: 'example.com', contact: '127.0.0.1:5997', expires: '300' },
      auth: { user: 'carol', password: 'carol-secret' },
      extraArgs: ['-d', String(NONCE_LIFETIME_S * 1000 + 1000 + 1000)],
    });
    expect(r.code, r.errors).toBe(0);
    expect(r.messages).toMatch(/WWW-Authenticate: [^\n]*stale=true/i);
    expect(r.messages).toMatch(/SIP\/2\.0 200 OK/);
    expect(await audit('stale_nonce', (f) => f.user === 'carol')).toBe(true);
  });

  it('a retransmitted authorised REGISTER gets its 200 again and never meets authentication twice', async () => {
    const before = await authOk();
    const r = await runSipp({
      scenario: 'auth-register-retransmission.xml',
      target,
      keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5996', expires: '300' },
      auth: { user: 'alice', password: 'alice-secret' },
    });
    expect(r.code, r.errors).toBe(0);
    expect((r.messages.match(/SIP\/2\.0 200 OK/g) ?? []).length).toBe(3);
    // Two authentications (CSeq 2 and the refresh); the retransmitted CSeq 2 was absorbed.
    expect((await authOk()) - before).toBe(2);
  });

  it('nonce_reused: a replayed Authorization (same nonce and nc) in a new transaction is challenged again', async () => {
    const first = await runSipp({
      scenario: 'register.xml',
      target,
      keys: { user: 'bob', domain: 'example.com', contact: '127.0.0.1:5995', expires: '300' },
      auth: { user: 'bob', password: 'bob-secret' },
    });
    expect(first.code, first.errors).toBe(0);
    const captured = /Authorization: ([^\r\n]+)/.exec(first.messages)?.[1];
    expect(captured).toBeDefined();
    const replay = await runSipp({
      scenario: 'auth-register-replayed-nc.xml',
      target,
      keys: { user: 'bob', domain: 'example.com', contact: '127.0.0.1:5994', expires: '300', authorization: captured! },
    });
    expect(replay.code, replay.errors).toBe(0);
    expect(replay.messages).toMatch(/SIP\/2\.0 401/);
    expect(replay.messages).not.toMatch(/stale=true/i);
    expect(await audit('nonce_reused', (f) => f.user === 'bob')).toBe(true);
  });
});
