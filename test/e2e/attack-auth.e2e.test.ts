/**
 * Attacks on authentication and relaying, each against the real process on loopback: identity
 * spoofing, replayed, stale and forged nonces, open relay, and credentials leaking downstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResponse, parseMessage, serialize } from '../../src/core/sip/index.js';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { SipUdpClient, answerChallenge, buildRequest, challengeParams, newBranch } from '../support/sip-udp-client.js';

const NONCE_LIFETIME_S = 2;

let sl: RunningSipledger;
let c: SipUdpClient;

beforeAll(async () => {
  sl = await startSipledger(baseConfig({ auth: { secret: 'attack-secret-0123456789abcdef', nonceLifetime: NONCE_LIFETIME_S } }));
  c = await SipUdpClient.open();
});
afterAll(async () => {
  c?.close();
  await sl?.stop();
  if (sl) removeDir(sl.dir);
});

function register(user: string, o: { toUser?: string; authorization?: string; callId?: string; cseq?: number; contact?: string } = {}): string {
  return buildRequest(
    {
      method: 'REGISTER',
      uri: 'sip:example.com',
      from: `<sip:${user}@example.com>`,
      to: `<sip:${o.toUser ?? user}@example.com>`,
      contact: o.contact ?? `<sip:${user}@${c.viaHost}>`,
      ...(o.callId ? { callId: o.callId } : {}),
      ...(o.cseq ? { cseq: o.cseq } : {}),
      headers: ['Expires: 600', ...(o.authorization ? [`Authorization: ${o.authorization}`] : [])],
    },
    c.viaHost,
  );
}

async function registerChallenge(user: string, toUser?: string): Promise<string> {
  const r = await c.request(register(user, toUser ? { toUser } : {}), sl.sipPort);
  expect(r?.status).toBe(401);
  return r!.response!.get('www-authenticate')!;
}

async function audit(cause: string): Promise<Array<{ user?: string; cause: string }>> {
  const res = await fetch(`${sl.adminUrl}/audit?since=1h&cause=${cause}`);
  return ((await res.json()) as { failures: Array<{ user?: string; cause: string }> }).failures;
}

describe('identity spoofing', () => {
  it('To spoofing: alice, authenticated as alice, registering a contact for bob is refused with 403 and bob gets no binding', async () => {
    const ch = await registerChallenge('alice', 'bob');
    const r = await c.request(register('alice', { toUser: 'bob', authorization: answerChallenge(ch, { username: 'alice', password: 'alice-secret', method: 'REGISTER', uri: 'sip:example.com' }) }), sl.sipPort);
    expect(r?.status).toBe(403);
    const loc = (await (await fetch(`${sl.adminUrl}/location?aor=${encodeURIComponent('sip:bob@example.com')}`)).json()) as { aors: Array<{ bindings: unknown[] }> };
    expect(loc.aors[0]?.bindings ?? []).toEqual([]);
  });

  it('From spoofing: an INVITE claiming to be from bob with alice\'s proxy credentials is refused with 403', async () => {
    const invite = (auth?: string, branch = newBranch()): string =>
      buildRequest(
        { method: 'INVITE', uri: 'sip:carol@example.com', from: '<sip:bob@example.com>', to: '<sip:carol@example.com>', branch, callId: 'from-spoof@test', headers: auth ? [`Proxy-Authorization: ${auth}`] : [] },
        c.viaHost,
      );
    const first = await c.request(invite(), sl.sipPort);
    expect(first?.status).toBe(407);
    const ch = first!.response!.get('proxy-authenticate')!;
    const r = await c.request(invite(answerChallenge(ch, { username: 'alice', password: 'alice-secret', method: 'INVITE', uri: 'sip:carol@example.com' })), sl.sipPort);
    expect(r?.status).toBe(403);
  });
});

describe('nonces', () => {
  it('a replayed nonce and nonce-count (a captured REGISTER sent again as a new request) is challenged again and recorded as nonce_reused', async () => {
    const ch = await registerChallenge('alice');
    const auth = answerChallenge(ch, { username: 'alice', password: 'alice-secret', method: 'REGISTER', uri: 'sip:example.com', nc: '00000001' });
    const ok = await c.request(register('alice', { authorization: auth, callId: 'replay@test', cseq: 2 }), sl.sipPort);
    expect(ok?.status).toBe(200);
    const replay = await c.request(register('alice', { authorization: auth, callId: 'replay@test', cseq: 3 }), sl.sipPort);
    expect(replay?.status).toBe(401);
    expect(challengeParams(replay!.response!.get('www-authenticate')!)['stale']).not.toBe('true');
    // The failure event is appended after the answer; poll the audit projection briefly.
    let events: Array<{ user?: string; cause: string }> = [];
    for (let i = 0; i < 50 && !events.some((e) => e.user === 'alice'); i++) {
      events = await audit('nonce_reused');
      if (!events.some((e) => e.user === 'alice')) await new Promise((r) => setTimeout(r, 100));
    }
    expect(events).toContainEqual(expect.objectContaining({ user: 'alice', cause: 'nonce_reused' }));
  });

  it('a stale nonce, answered correctly after its lifetime, gets 401 with stale=true', async () => {
    const ch = await registerChallenge('bob');
    // Past the lifetime and the clock-drift allowance (1 s).
    await new Promise((r) => setTimeout(r, NONCE_LIFETIME_S * 1000 + 1500));
    const r = await c.request(register('bob', { authorization: answerChallenge(ch, { username: 'bob', password: 'bob-secret', method: 'REGISTER', uri: 'sip:example.com' }) }), sl.sipPort);
    expect(r?.status).toBe(401);
    expect(challengeParams(r!.response!.get('www-authenticate')!)['stale']).toBe('true');
  });

  it('a forged nonce gets 401 without stale=true (a forger cannot make a phone retry silently)', async () => {
    const ch = await registerChallenge('carol');
    const forged = answerChallenge(ch, { username: 'carol', password: 'carol-secret', method: 'REGISTER', uri: 'sip:example.com', nonce: 'a'.repeat(40) });
    const r = await c.request(register('carol', { authorization: forged }), sl.sipPort);
    expect(r?.status).toBe(401);
    const fresh = challengeParams(r!.response!.get('www-authenticate')!);
    expect(fresh['stale']).toBeUndefined();
    expect(fresh['nonce']).not.toBe('a'.repeat(40));
  });
});

describe('relaying', () => {
  it('open relay: a stranger\'s INVITE to a foreign destination is refused with 403 and nothing reaches the destination', async () => {
    const target = await SipUdpClient.open();
    try {
      const r = await c.request(
        buildRequest({ method: 'INVITE', uri: `sip:victim@127.0.0.1:${target.port}`, from: '<sip:mallory@evil.example>', to: `<sip:victim@127.0.0.1:${target.port}>` }, c.viaHost),
        sl.sipPort,
      );
      expect(r?.status).toBe(403);
      // Claiming one of our domains earns a challenge, not a relay.
      const claimed = await c.request(
        buildRequest({ method: 'INVITE', uri: `sip:victim@127.0.0.1:${target.port}`, from: '<sip:alice@example.com>', to: `<sip:victim@127.0.0.1:${target.port}>` }, c.viaHost),
        sl.sipPort,
      );
      expect(claimed?.status).toBe(407);
      const leaked = await target.waitFor(() => true, 1000);
      expect(leaked).toBeUndefined();
    } finally {
      target.close();
    }
  });

  it('credentials are never forwarded: the callee sees no Proxy-Authorization for our realm', async () => {
    const callee = await SipUdpClient.open();
    try {
      // bob registers with his contact at the callee socket.
      const ch = await c.request(register('bob', { contact: `<sip:bob@${callee.viaHost}>` }), sl.sipPort);
      const wa = ch!.response!.get('www-authenticate')!;
      const reg = await c.request(register('bob', { contact: `<sip:bob@${callee.viaHost}>`, authorization: answerChallenge(wa, { username: 'bob', password: 'bob-secret', method: 'REGISTER', uri: 'sip:example.com' }) }), sl.sipPort);
      expect(reg?.status).toBe(200);

      const invite = (auth?: string): string =>
        buildRequest({ method: 'INVITE', uri: 'sip:bob@example.com', from: '<sip:alice@example.com>', to: '<sip:bob@example.com>', callId: 'no-leak@test', headers: auth ? [`Proxy-Authorization: ${auth}`] : [] }, c.viaHost);
      const first = await c.request(invite(), sl.sipPort);
      expect(first?.status).toBe(407);
      c.send(invite(answerChallenge(first!.response!.get('proxy-authenticate')!, { username: 'alice', password: 'alice-secret', method: 'INVITE', uri: 'sip:bob@example.com' })), sl.sipPort);
      const got = await callee.waitFor((r) => r.raw.subarray(0, 7).toString() === 'INVITE ', 5000);
      expect(got).toBeDefined();
      expect(got!.raw.toString('latin1')).not.toMatch(/^proxy-authorization\s*:/im);
      expect(got!.raw.toString('latin1')).not.toMatch(/realm="example\.com"/i);
      // The callee declines, so the call ends.
      const parsed = parseMessage(got!.raw);
      if (parsed.ok && parsed.message.isRequest) callee.send(serialize(createResponse(parsed.message, 486)), sl.sipPort);
      const final = await c.waitFor((r) => r.status === 486, 5000);
      expect(final?.status).toBe(486);
    } finally {
      callee.close();
    }
  });
});
