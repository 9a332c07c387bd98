/**
 * The registrar as a phone sees it (RFC 3261 s10.3): refresh, removal, wildcard removal, 423 with
 * Min-Expires, a query, and the 200 OK listing every binding — SIPp against the real process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';
import { registerScenario, writeScenario, type RegisterStep } from '../support/sipp-scenarios.js';

describe('registrar through the real proxy', () => {
  let proxy: RunningSipledger;

  beforeAll(async () => {
    proxy = await startSipledger(baseConfig({ registrar: { minExpires: 60, maxExpires: 3600, defaultExpires: 600, maxContacts: 5 } }, await freePort()));
  });

  afterAll(async () => {
    await proxy?.stop();
    removeDir(proxy.dir);
  });

  async function steps(user: string, password: string, list: RegisterStep[]) {
    const scenario = writeScenario(registerScenario({ user, domain: 'example.com', steps: list }));
    return runSipp({ scenario, target: `127.0.0.1:${proxy.sipPort}`, keys: { contact: '127.0.0.1:5990' }, auth: { user, password } });
  }

  async function bindings(aor: string): Promise<Array<{ uri: string; expiresAt: number }>> {
    const res = await fetch(`${proxy.adminUrl}/location?aor=${encodeURIComponent(aor)}`);
    const body = (await res.json()) as { aors: Array<{ bindings: Array<{ uri: string; expiresAt: number }> }> };
    return body.aors[0]?.bindings ?? [];
  }

  it('adds two contacts, refreshes one, and lists both with their remaining time', async () => {
    const r = await steps('alice', 'alice-secret', [
      { contact: '<sip:alice@127.0.0.1:6001>', expires: 300, expect: 200, contactMatches: ['6001>;expires=300'] },
      { contact: '<sip:alice@127.0.0.1:6002>;q=0.5', expires: 120, expect: 200, contactMatches: ['6001>;expires=(29\\d|300)', '6002>;q=0.5;expires=120'] },
      { contact: '<sip:alice@127.0.0.1:6001>', expires: 900, expect: 200, contactMatches: ['6001>;expires=900'] },
    ]);
    expect(r.code, r.errors).toBe(0);
    const b = await bindings('sip:alice@example.com');
    expect(b.map((x) => x.uri).sort()).toEqual(['sip:alice@127.0.0.1:6001', 'sip:alice@127.0.0.1:6002']);
  });

  it('removes one contact with expires=0 and all of them with Contact: * and Expires: 0', async () => {
    const r = await steps('bob', 'bob-secret', [
      { contact: '<sip:bob@127.0.0.1:6011>, <sip:bob@127.0.0.1:6012>', expires: 300, expect: 200 },
      { contact: '<sip:bob@127.0.0.1:6011>;expires=0', expect: 200 },
    ]);
    expect(r.code, r.errors).toBe(0);
    expect((await bindings('sip:bob@example.com')).map((x) => x.uri)).toEqual(['sip:bob@127.0.0.1:6012']);
    const w = await steps('bob', 'bob-secret', [{ contact: '*', expires: 0, expect: 200 }]);
    expect(w.code, w.errors).toBe(0);
    expect(await bindings('sip:bob@example.com')).toEqual([]);
  });

  it('rejects Contact: * without Expires: 0 with 400', async () => {
    const r = await steps('bob', 'bob-secret', [{ contact: '*', expires: 300, expect: 400 }]);
    expect(r.code, r.errors).toBe(0);
  });

  it('answers an interval below the minimum with 423 and Min-Expires, and binds nothing', async () => {
    const r = await steps('carol', 'carol-secret', [{ contact: '<sip:carol@127.0.0.1:6021>', expires: 10, expect: 423, headerPresent: 'Min-Expires:' }]);
    expect(r.code, r.errors).toBe(0);
    expect(r.messages).toMatch(/Min-Expires: 60/);
    expect(await bindings('sip:carol@example.com')).toEqual([]);
  });

  it('shortens an interval above the maximum and answers a query with the current bindings', async () => {
    const r = await steps('carol', 'carol-secret', [
      { contact: '<sip:carol@127.0.0.1:6022>', expires: 86400, expect: 200, contactMatches: ['6022>;expires=3600'] },
      { contact: '', expect: 200, contactMatches: ['6022>;expires=3[56][0-9][0-9]'] },
    ]);
    expect(r.code, r.errors).toBe(0);
  });
});
