/**
 * Smaller parts of the route script against the real process: OPTIONS to the proxy itself,
 * Max-Forwards exhausted (483), aliases resolved before the location lookup, no open relay, and
 * malformed requests answered 400 with a reason.
 */
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp, startSippServer } from '../support/sipp.js';

/** Sends one datagram and resolves every datagram that comes back within `waitMs`. */
async function exchange(port: number, text: string, waitMs = 1000): Promise<string[]> {
  const sock = createSocket('udp4');
  const got: string[] = [];
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const local = sock.address().port;
  sock.on('message', (m) => got.push(m.toString('utf8')));
  sock.send(Buffer.from(text.replace(/LOCALPORT/g, String(local))), port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, waitMs));
  sock.close();
  return got;
}

function req(lines: string[]): string {
  return [...lines, 'Content-Length: 0', '', ''].join('\r\n');
}

describe('route script details through the real proxy', () => {
  let proxy: RunningSipledger;

  beforeAll(async () => {
    proxy = await startSipledger(baseConfig({ aliases: { 'sip:sales@example.com': 'sip:bob@example.com' } }, await freePort()));
  });

  afterAll(async () => {
    await proxy?.stop();
    removeDir(proxy.dir);
  });

  it('answers OPTIONS addressed to the proxy itself with 200, Allow and Supported', async () => {
    const [res] = await exchange(
      proxy.sipPort,
      req([
        `OPTIONS sip:127.0.0.1:${proxy.sipPort} SIP/2.0`,
        'Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bKopt1;rport',
        'Max-Forwards: 70',
        'From: <sip:monitor@example.net>;tag=m1',
        `To: <sip:127.0.0.1:${proxy.sipPort}>`,
        'Call-ID: options-1',
        'CSeq: 1 OPTIONS',
      ]),
    );
    expect(res).toMatch(/^SIP\/2\.0 200 OK\r\n/);
    expect(res).toMatch(/\r\nAllow: [^\r]*REGISTER/);
    expect(res).toMatch(/\r\nSupported: /);
  });

  it('answers 483 Too Many Hops when Max-Forwards is 0', async () => {
    const [res] = await exchange(
      proxy.sipPort,
      req([
        'INVITE sip:bob@example.com SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bKmf0;rport',
        'Max-Forwards: 0',
        'From: <sip:alice@example.com>;tag=a1',
        'To: <sip:bob@example.com>',
        'Call-ID: mf-1',
        'CSeq: 1 INVITE',
      ]),
    );
    expect(res).toMatch(/^SIP\/2\.0 483 /);
  });

  it('refuses to relay between two foreign domains without authentication (no open relay)', async () => {
    const [res] = await exchange(
      proxy.sipPort,
      req([
        'INVITE sip:someone@elsewhere.example SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bKrelay1;rport',
        'Max-Forwards: 70',
        'From: <sip:spammer@foreign.example>;tag=s1',
        'To: <sip:someone@elsewhere.example>',
        'Call-ID: relay-1',
        'CSeq: 1 INVITE',
      ]),
    );
    expect(res).toMatch(/^SIP\/2\.0 403 /);
    expect(res).not.toMatch(/Authenticate/);
  });

  it('answers a request with a malformed Max-Forwards with 400 and a reason naming the problem', async () => {
    const [res] = await exchange(
      proxy.sipPort,
      req([
        'REGISTER sip:example.com SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bKbad1;rport',
        'Max-Forwards: many',
        'From: <sip:alice@example.com>;tag=b1',
        'To: <sip:alice@example.com>',
        'Call-ID: bad-1',
        'CSeq: 1 REGISTER',
      ]),
    );
    expect(res).toMatch(/^SIP\/2\.0 400 [^\r]*Max-Forwards/);
  });

  it('resolves an alias before the location lookup: a call to sales reaches bob', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml' });
    try {
      const reg = await runSipp({
        scenario: 'register.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { user: 'bob', domain: 'example.com', contact: `127.0.0.1:${uas.port}`, expires: '300' },
        auth: { user: 'bob', password: 'bob-secret' },
      });
      expect(reg.code, reg.errors).toBe(0);
      const call = await runSipp({
        scenario: 'call.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { caller: 'alice', callee: 'sales', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      expect(call.code, call.errors).toBe(0);
      expect((await uas.stop()).messages).toMatch(new RegExp(`INVITE sip:bob@127\\.0\\.0\\.1:${uas.port} SIP/2\\.0`));
    } finally {
      await uas.stop();
    }
  });
});
