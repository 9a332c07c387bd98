import dgram from 'node:dgram';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSipledger, type Sipledger } from '../../src/app.js';
import { configFromObject } from '../../src/config/config.js';
import { parseMessage } from '../../src/core/sip/index.js';
import { responseProblem, runFuzz } from '../stress/fuzz-engine.js';
import { digestResponse } from '../support/digest.js';

describe('the request path under mutated real SIP messages', () => {
  it('20,000 mutated messages: nothing escapes, nothing hangs, every stateful answer and relayed request is well-formed, the heap stays bounded', async () => {
    const r = await runFuzz({ count: 20_000, seed: 4475, log: 'memory', hangAfterMs: 35_000 });
    expect(r.crashDetails).toEqual([]);
    expect(r.crashes).toBe(0);
    expect(r.hangDetails).toEqual([]);
    expect(r.hangs).toBe(0);
    expect(r.badDetails).toEqual([]);
    expect(r.malformedResponses).toBe(0);
    expect(r.malformedRelays).toBe(0);
    // The run reached every layer: parsed inputs, challenges, registrations, relayed calls.
    expect(r.parsedInputs).toBeGreaterThan(10_000);
    expect(r.statuses['401']).toBeGreaterThan(0);
    expect(r.statuses['407']).toBeGreaterThan(0);
    expect(r.statuses['400']).toBeGreaterThan(0);
    expect(r.registrations).toBeGreaterThan(100);
    expect(r.relayedRequests).toBeGreaterThan(1_000);
    // Live transactions (32 s timers) and the memory log account for the growth; a leak per message
    // would show far above this over 20,000 messages.
    expect(r.heapGrowthBytes).toBeLessThan(160 * 1024 * 1024);
  }, 60_000);
});

describe('stateless error answers', () => {
  let app: Sipledger;
  let client: dgram.Socket;
  let port: number;

  beforeAll(async () => {
    const config = configFromObject({
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }],
      domains: [{ domain: 'example.com', backend: 'local' }],
      backends: { local: { type: 'memory', users: [{ username: 'alice', password: 'alice-secret' }] } },
      auth: { secret: 'fuzz-secret-0123456789abcdef' },
      log: { type: 'memory' },
      admin: { enabled: false },
    });
    app = await startSipledger(config, pino({ level: 'silent' }));
    port = app.transports.listening()[0]!.port;
    client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  });
  afterAll(async () => {
    client?.close();
    await app?.stop(0);
  });

  async function answersTo(lines: string[]): Promise<Buffer[]> {
    const got: Buffer[] = [];
    const on = (b: Buffer): void => void got.push(b);
    client.on('message', on);
    client.send(Buffer.from(lines.join('\r\n'), 'latin1'), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 500));
    client.off('message', on);
    return got;
  }

  const base = (cp: number, extra: string[]): string[] => [
    'OPTIONS sip:alice@example.com SIP/2.0',
    `Via: SIP/2.0/UDP 127.0.0.1:${cp};branch=z9hG4bKdup${Math.random().toString(16).slice(2)};rport`,
    'Max-Forwards: 70',
    'From: <sip:bob@example.com>;tag=1',
    'Call-ID: dup-headers@127.0.0.1',
    'CSeq: 1 OPTIONS',
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ];

  /** One request as lines: method and Request-URI, To, Call-ID and extra header rows vary. */
  const requestLines = (cp: number, m: { method: string; uri: string; from?: string; to: string; callId: string; extra?: string[] }): string[] => [
    `${m.method} ${m.uri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${cp};branch=z9hG4bKrq${Math.random().toString(16).slice(2)};rport`,
    'Max-Forwards: 70',
    `From: ${m.from ?? '<sip:alice@example.com>'};tag=1`,
    `To: ${m.to}`,
    `Call-ID: ${m.callId}`,
    `CSeq: 1 ${m.method}`,
    ...(m.extra ?? []),
    'Content-Length: 0',
    '',
    '',
  ];

  it('a request with two To headers is refused with 400, and the 400 itself is a message the peer can parse (or nothing is sent)', async () => {
    const cp = client.address().port;
    const answers = await answersTo(base(cp, ['To: <sip:alice@example.com>', 'To: <sip:carol@example.com>']));
    // RFC 4475 s3.3.8 (multiple values in single-value fields): answered 400.
    expect(answers.length).toBeGreaterThan(0);
    for (const a of answers) {
      const r = parseMessage(a);
      expect(r.ok && !r.message.isRequest ? r.message.status : undefined).toBe(400);
      expect(responseProblem(a)).toBeUndefined();
    }
  });

  it('a request with a To that is not a name-addr is refused, and the answer parses (or nothing is sent)', async () => {
    const cp = client.address().port;
    const malformedBefore = app.transports.stats.malformed;
    const answers = await answersTo(base(cp, ['To: "Mr. J. User <sip:j.user@example.com>']));
    expect(app.transports.stats.malformed).toBe(malformedBefore + 1);
    for (const a of answers) expect(responseProblem(a)).toBeUndefined();
  });

  it('requests with made-up methods are counted under one OTHER key, so random methods grow neither memory nor metric labels', async () => {
    const cp = client.address().port;
    const before = Object.keys(app.router.stats.requests).length;
    for (let i = 0; i < 5; i++) {
      await answersTo(requestLines(cp, { method: `XMETHOD${i}`, uri: 'sip:alice@example.com', from: '<sip:bob@example.com>', to: '<sip:alice@example.com>', callId: `xmethod-${i}@127.0.0.1` }));
    }
    const keys = Object.keys(app.router.stats.requests);
    expect(keys.filter((k) => k.startsWith('XMETHOD'))).toEqual([]);
    expect(app.router.stats.requests['OTHER']).toBeGreaterThanOrEqual(5);
    expect(keys.length).toBeLessThanOrEqual(before + 1);
    expect(Object.keys(app.router.stats.responses).filter((k) => k.startsWith('XMETHOD'))).toEqual([]);
  }, 30_000);

  it('a request for the proxy itself whose Route header holds no value is answered, not turned into a 500 (found by the fuzzer)', async () => {
    const cp = client.address().port;
    for (const route of ['Route: ,', 'Route: ', 'Route: ,,,']) {
      const answers = await answersTo(
        requestLines(cp, { method: 'OPTIONS', uri: `sip:127.0.0.1:${port}`, to: '<sip:127.0.0.1>', callId: `empty-route-${route.length}@127.0.0.1`, extra: [route] }),
      );
      expect(answers.length).toBeGreaterThan(0);
      for (const a of answers) {
        expect(responseProblem(a)).toBeUndefined();
        const r = parseMessage(a);
        expect(r.ok && !r.message.isRequest ? r.message.status : 0).not.toBe(500);
      }
    }
  });

  it('an OPTIONS whose Route holds a bare CR is refused with 400 whose status line is still one well-formed line', async () => {
    const cp = client.address().port;
    const answers = await answersTo(
      requestLines(cp, { method: 'OPTIONS', uri: 'sip:alice@example.com', to: '<sip:alice@example.com>', callId: 'bare-cr@127.0.0.1', extra: ['Route: <sip:127.0.0.1:606=@\r48;lr>'] }),
    );
    expect(answers.length).toBeGreaterThan(0);
    for (const a of answers) {
      expect(responseProblem(a)).toBeUndefined();
      expect(a.toString('latin1').split('\r\n')[0]).toMatch(/^SIP\/2\.0 400 [\x20-\x7e\t]*$/);
    }
  });

  it('an authenticated REGISTER whose Expires holds a bare CR is refused with 400 whose status line is one well-formed line', async () => {
    const cp = client.address().port;
    const challenge = app.authenticator.challenge('REGISTER', 'example.com')!;
    const nonce = /nonce="([^"]+)"/.exec(challenge.headers[0]![1])![1]!;
    const response = digestResponse({ username: 'alice', realm: 'example.com', password: 'alice-secret', method: 'REGISTER', uri: 'sip:example.com', nonce, qop: 'auth', nc: '00000001', cnonce: 'c1' });
    const answers = await answersTo([
      'REGISTER sip:example.com SIP/2.0',
      `Via: SIP/2.0/UDP 127.0.0.1:${cp};branch=z9hG4bKcr2${Math.random().toString(16).slice(2)};rport`,
      'Max-Forwards: 70',
      'From: <sip:alice@example.com>;tag=1',
      'To: <sip:alice@example.com>',
      'Call-ID: bare-cr-expires@127.0.0.1',
      'CSeq: 1 REGISTER',
      'Contact: <sip:alice@127.0.0.1:5060>',
      'Expires: 0\r0',
      `Authorization: Digest username="alice", realm="example.com", nonce="${nonce}", uri="sip:example.com", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1"`,
      'Content-Length: 0',
      '',
      '',
    ]);
    expect(answers.length).toBeGreaterThan(0);
    for (const a of answers) {
      expect(a.toString('latin1').split('\r\n')[0]).toMatch(/^SIP\/2\.0 400 [\x20-\x7e\t]*$/);
      expect(responseProblem(a)).toBeUndefined();
    }
  });
});
