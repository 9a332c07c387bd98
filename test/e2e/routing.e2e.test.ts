/**
 * The seeds' route script, end to end: the real sipledger process on loopback, SIPp phones on
 * both sides. Registration with authentication, a call between two registered phones through the
 * proxy with Record-Route and loose-routed BYEs in each direction, 404 for an unregistered user,
 * CANCEL of a ringing call, retransmissions under packet loss, and a restart between REGISTER and
 * INVITE.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp, startSippServer } from '../support/sipp.js';

interface LocationBody {
  aors: Array<{ aor: string; bindings: Array<{ contact: string; uri: string; expiresAt: number }> }>;
}

async function location(proxy: RunningSipledger, aor?: string): Promise<LocationBody> {
  const res = await fetch(`${proxy.adminUrl}/location${aor ? `?aor=${encodeURIComponent(aor)}` : ''}`);
  expect(res.status).toBe(200);
  return (await res.json()) as LocationBody;
}

async function register(proxy: RunningSipledger, user: string, password: string, contact: string, expires = 300) {
  return runSipp({
    scenario: 'register.xml',
    target: `127.0.0.1:${proxy.sipPort}`,
    keys: { user, domain: 'example.com', contact, expires: String(expires) },
    auth: { user, password },
  });
}

// The same calls with the UDP listener's datagrams on the main thread and on an I/O thread
// (listen[].ioThread, written out both ways): what the phones see must not change.
describe.each([
  { mode: ' (UDP on the main thread)', ioThread: false },
  { mode: ' (UDP on an I/O thread)', ioThread: true },
])('routing through the real proxy$mode', ({ ioThread }) => {
  let proxy: RunningSipledger;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    const config = baseConfig({}, port);
    config['listen'] = (config['listen'] as Array<Record<string, unknown>>).map((l) => (l['transport'] === 'udp' ? { ...l, ioThread } : l));
    proxy = await startSipledger(config);
  });

  it('says at start which listeners use an I/O thread', async () => {
    const started = await proxy.waitForLog((l) => l['msg'] === 'sipledger started');
    const udp = (started['listen'] as string[]).filter((l) => l.startsWith('udp:'));
    expect(udp).toHaveLength(1);
    expect(started['ioThread']).toEqual(ioThread ? udp : []);
  });

  afterAll(async () => {
    await proxy?.stop();
    removeDir(proxy.dir);
  });

  it('registers a phone after a 401 challenge and answers with its binding', async () => {
    const r = await register(proxy, 'alice', 'alice-secret', '127.0.0.1:5999');
    expect(r.code, r.errors).toBe(0);
    expect(r.messages).toMatch(/SIP\/2\.0 401 Unauthorized[\s\S]*WWW-Authenticate: Digest realm="example.com"/);
    expect(r.messages).toMatch(/SIP\/2\.0 200 OK[\s\S]*Contact: <sip:alice@127\.0\.0\.1:5999>;expires=300/);
    const loc = await location(proxy, 'sip:alice@example.com');
    expect(loc.aors[0]!.bindings.map((b) => b.uri)).toEqual(['sip:alice@127.0.0.1:5999']);
    // The lookup and the durable append were timed into the latency histograms.
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    expect(Number(/sipledger_backend_latency_seconds_count\{backend="local"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/sipledger_log_append_latency_seconds_count (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    expect(Number(/sipledger_log_fsync_groups_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  });

  it('relays a call to the registered callee with Record-Route; the caller hangs up along the route set', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml' });
    try {
      expect((await register(proxy, 'bob', 'bob-secret', `127.0.0.1:${uas.port}`)).code).toBe(0);
      const call = await runSipp({
        scenario: 'call.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { caller: 'alice', callee: 'bob', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
        extraArgs: ['-d', '100'],
      });
      expect(call.code, call.errors).toBe(0);
      expect(call.messages).toMatch(/SIP\/2\.0 407 Proxy Authentication Required/);
      // The ACK and BYE went to the proxy's Record-Route entry (loose routing).
      expect(call.messages).toMatch(new RegExp(`BYE sip:[^\\n]*\\n[\\s\\S]*?Route: <sip:127\\.0\\.0\\.1:${port};lr>`));
      const callee = await uas.stop();
      // The callee saw the call through the proxy, with our Record-Route and without the caller's credentials.
      expect(callee.messages).toMatch(new RegExp(`INVITE sip:bob@127\\.0\\.0\\.1:${uas.port} SIP/2\\.0`));
      expect(callee.messages).toMatch(new RegExp(`Record-Route: <sip:127\\.0\\.0\\.1:${port};lr>`));
      expect(callee.messages).not.toMatch(/Proxy-Authorization/i);
      expect(callee.messages).toMatch(/BYE sip:/);
    } finally {
      await uas.stop();
    }
  });

  it('relays the callee\'s BYE back to the caller along the recorded route', async () => {
    const uas = await startSippServer({ scenario: 'uas-bye.xml' });
    try {
      expect((await register(proxy, 'carol', 'carol-secret', `127.0.0.1:${uas.port}`)).code).toBe(0);
      const call = await runSipp({
        scenario: 'call-recv-bye.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { caller: 'alice', callee: 'carol', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      expect(call.code, call.errors).toBe(0);
      const callee = await uas.stop();
      expect(callee.messages).toMatch(new RegExp(`BYE sip:alice@127\\.0\\.0\\.1:\\d+ SIP/2\\.0[\\s\\S]*?Route: <sip:127\\.0\\.0\\.1:${port};lr>`));
      // The BYE reached the caller through the proxy: its top Via is the proxy's.
      expect(call.messages).toMatch(new RegExp(`BYE sip:alice@[^\\n]*\\n[\\s\\S]*?Via: SIP/2\\.0/UDP 127\\.0\\.0\\.1:${port};branch=z9hG4bK`));
    } finally {
      await uas.stop();
    }
  });

  it('relays the callee\'s retransmitted 200 after the call was answered, and answers a late CANCEL 200 with the 2xx To tag', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml' });
    try {
      expect((await register(proxy, 'dave', 'dave-secret', `127.0.0.1:${uas.port}`)).code).toBe(0);
      const call = await runSipp({
        scenario: 'call-late-ack.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { caller: 'alice', callee: 'dave', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      // The scenario itself requires the second 200 (CSeq INVITE) and a 200 to the CANCEL.
      expect(call.code, call.errors).toBe(0);
      const oks = [...call.messages.matchAll(/SIP\/2\.0 200 OK[\s\S]*?\r?\n\r?\n/g)].map((m) => m[0]);
      const inviteOks = oks.filter((m) => /CSeq: 2 INVITE/.test(m));
      const cancelOk = oks.find((m) => /CSeq: 2 CANCEL/.test(m));
      expect(inviteOks.length).toBeGreaterThanOrEqual(2);
      const tagOf = (m: string) => /^To:.*;tag=([^;\s>]+)/m.exec(m)?.[1];
      expect(tagOf(inviteOks[0]!)).toBeDefined();
      expect(tagOf(inviteOks[1]!)).toBe(tagOf(inviteOks[0]!));
      expect(cancelOk).toBeDefined();
      expect(tagOf(cancelOk!)).toBe(tagOf(inviteOks[0]!));
      const callee = await uas.stop();
      // The callee saw one INVITE (no CANCEL reached it: the call was answered) and the caller's BYE.
      expect(callee.messages.match(/^INVITE sip:/gm)).toHaveLength(1);
      expect(callee.messages).not.toMatch(/^CANCEL sip:/m);
      expect(callee.messages).toMatch(/^BYE sip:/m);
    } finally {
      await uas.stop();
    }
  });

  it('answers 404 User Not Found for a user with no binding', async () => {
    const call = await runSipp({
      scenario: 'call-404.xml',
      target: `127.0.0.1:${proxy.sipPort}`,
      keys: { caller: 'alice', callee: 'nobody', domain: 'example.com' },
      auth: { user: 'alice', password: 'alice-secret' },
    });
    expect(call.code, call.errors).toBe(0);
    expect(call.messages).toMatch(/SIP\/2\.0 404 User Not Found/);
  });

  it('cancels a ringing call: 200 to the CANCEL, the callee cancelled, 487 to the caller', async () => {
    const uas = await startSippServer({ scenario: 'uas-cancel.xml' });
    try {
      expect((await register(proxy, 'bob', 'bob-secret', `127.0.0.1:${uas.port}`, 300)).code).toBe(0);
      const call = await runSipp({
        scenario: 'call-cancel.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { caller: 'alice', callee: 'bob', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      expect(call.code, call.errors).toBe(0);
      expect(call.messages).toMatch(/SIP\/2\.0 487 Request Terminated/);
      const callee = await uas.stop();
      expect(callee.code).toBe(0);
      expect(callee.messages).toMatch(/CANCEL sip:bob@/);
    } finally {
      await uas.stop();
    }
  });
});

describe('retransmissions and restarts', () => {
  it('completes calls when 10% of the caller\'s packets are lost, and never challenges a retransmission twice', async () => {
    const port = await freePort();
    const proxy = await startSipledger(baseConfig({}, port));
    const uas = await startSippServer({ scenario: 'uas.xml', calls: 100 });
    try {
      expect((await register(proxy, 'bob', 'bob-secret', `127.0.0.1:${uas.port}`)).code).toBe(0);
      const call = await runSipp({
        scenario: 'call.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { caller: 'alice', callee: 'bob', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
        calls: 5,
        rate: 5,
        lost: 10,
        timeoutMs: 40_000,
        extraArgs: ['-d', '50'],
      });
      expect(call.successful, call.errors).toBe(5);
      expect(call.failed).toBe(0);
      // Retransmissions were answered by the transaction layer, not re-authenticated.
      const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
      const ok = Number(/sipledger_auth_outcomes_total\{outcome="ok"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      expect(ok).toBe(6); // bob's REGISTER + one authenticated INVITE per call
      expect(metrics).not.toMatch(/outcome="nonce_reused"/);
    } finally {
      await uas.stop();
      await proxy.stop();
      removeDir(proxy.dir);
    }
  }, 90_000);

  it('reaches a phone registered before a crash (SIGKILL) and restart', async () => {
    const port = await freePort();
    const config = baseConfig({}, port);
    const first = await startSipledger(config);
    const uas = await startSippServer({ scenario: 'uas.xml' });
    try {
      expect((await register(first, 'bob', 'bob-secret', `127.0.0.1:${uas.port}`)).code).toBe(0);
      await first.kill();
      const second = await startSipledger(config, { dir: first.dir });
      try {
        const call = await runSipp({
          scenario: 'call.xml',
          target: `127.0.0.1:${second.sipPort}`,
          keys: { caller: 'alice', callee: 'bob', domain: 'example.com' },
          auth: { user: 'alice', password: 'alice-secret' },
        });
        expect(call.code, call.errors).toBe(0);
        const callee = await uas.stop();
        expect(callee.successful).toBe(1);
      } finally {
        await second.stop();
      }
    } finally {
      await uas.stop();
      removeDir(first.dir);
    }
  }, 60_000);
});
