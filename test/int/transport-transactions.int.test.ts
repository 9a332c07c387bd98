import dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { DEFAULT_LIMITS, type SipRequest, newBranch, parseMessage } from '../../src/core/sip/index.js';
import { type ServerTransaction, TransactionLayer } from '../../src/core/transaction/index.js';
import { TransportManager } from '../../src/core/transport/index.js';

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

const REGISTER =
  'REGISTER sip:example.com SIP/2.0\r\n' +
  'Via: SIP/2.0/UDP 10.1.2.3:5060;rport;branch=z9hG4bKreg77\r\n' +
  'Max-Forwards: 70\r\n' +
  'From: <sip:alice@example.com>;tag=a1\r\n' +
  'To: <sip:alice@example.com>\r\n' +
  'Call-ID: reg-77@10.1.2.3\r\n' +
  'CSeq: 5 REGISTER\r\n' +
  'Contact: <sip:alice@10.1.2.3:5060>\r\n' +
  'Content-Length: 0\r\n\r\n';

describe('transactions over real UDP sockets', () => {
  let tm: TransportManager;
  let layer: TransactionLayer;
  let requests: Array<{ req: SipRequest; tx: ServerTransaction | undefined }>;
  let phone: dgram.Socket;
  let heard: string[];
  let port: number;

  beforeEach(async () => {
    tm = await TransportManager.listen({
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
    });
    port = tm.listening()[0]!.port;
    requests = [];
    layer = new TransactionLayer({
      transport: tm,
      logger: pino({ level: 'silent' }),
      config: { t1: 20, t2: 160, t4: 200 },
      onRequest: (req, tx) => requests.push({ req, tx }),
    });
    tm.onMessage((m) => layer.receive(m));
    heard = [];
    phone = dgram.createSocket('udp4');
    phone.on('message', (b) => heard.push(b.toString()));
    await new Promise<void>((r) => phone.bind(0, '127.0.0.1', () => r()));
  });

  afterEach(async () => {
    layer.close();
    await tm.close();
    phone.close();
  });

  it('a REGISTER retransmitted while its authentication is in progress and after the 401 meets the application once', async () => {
    phone.send(REGISTER, port, '127.0.0.1');
    await until(() => requests.length === 1, 'the REGISTER');
    // the phone retransmits while the application is still looking up credentials
    phone.send(REGISTER, port, '127.0.0.1');
    await until(() => layer.stats.retransmissionsAbsorbed === 1, 'the copy to be absorbed');
    requests[0]!.tx!.replyStatus(401, { headers: [['WWW-Authenticate', 'Digest realm="example.com", nonce="n1"']] });
    await until(() => heard.length === 1, 'the 401');
    phone.send(REGISTER, port, '127.0.0.1');
    await until(() => heard.length === 2, 'the repeated 401');
    expect(heard[1]).toBe(heard[0]);
    expect(heard[0]).toMatch(/^SIP\/2\.0 401 Unauthorized\r\n/);
    expect(requests).toHaveLength(1);
  });

  it('a client INVITE to a peer that answers 486 is acknowledged hop by hop, and a silent peer times out', async () => {
    const phonePort = phone.address().port;
    const invite = (branch: string, callId: string) =>
      parseMessage(
        Buffer.from(
          'INVITE sip:bob@127.0.0.1 SIP/2.0\r\n' +
            `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=${branch}\r\n` +
            'Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n' +
            `Call-ID: ${callId}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`,
        ),
      );
    const r1 = invite(newBranch(), 'inv-busy');
    if (!r1.ok || !r1.message.isRequest) throw new Error('fixture');
    const statuses: number[] = [];
    layer.sendRequest(r1.message, { address: '127.0.0.1', port: phonePort, transport: 'udp' }, {
      onResponse: (res) => statuses.push(res.status),
      onTimeout: () => statuses.push(408),
      onTransportError: () => statuses.push(503),
    });
    await until(() => heard.length >= 1, 'the INVITE at the phone');
    const got = parseMessage(Buffer.from(heard[0]!));
    if (!got.ok || !got.message.isRequest) throw new Error('phone got garbage');
    const inv = got.message;
    const busy =
      'SIP/2.0 486 Busy Here\r\n' +
      `Via: ${inv.get('via')}\r\nFrom: ${inv.get('from')}\r\nTo: ${inv.get('to')};tag=bob1\r\nCall-ID: ${inv.callId}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`;
    phone.send(busy, port, '127.0.0.1');
    await until(() => heard.some((h) => h.startsWith('ACK ')), 'the ACK');
    expect(statuses).toEqual([486]);
    const ack = heard.find((h) => h.startsWith('ACK '))!;
    expect(ack).toContain('To: <sip:bob@example.com>;tag=bob1');

    // A peer that never answers: timer A retransmits, timer B (64*T1) gives up.
    const r2 = invite(newBranch(), 'inv-silent');
    if (!r2.ok || !r2.message.isRequest) throw new Error('fixture');
    const before = heard.length;
    let timedOut = false;
    layer.sendRequest(r2.message, { address: '127.0.0.1', port: phonePort, transport: 'udp' }, {
      onResponse: () => undefined,
      onTimeout: () => (timedOut = true),
      onTransportError: () => undefined,
    });
    await until(() => timedOut, 'timer B');
    const copies = heard.slice(before).filter((h) => h.includes('inv-silent'));
    // Nominally 7 (0, T1, 3T1, 7T1, 15T1, 31T1, 63T1); real timers may drift the last past timer B.
    expect(copies.length).toBeGreaterThanOrEqual(5);
    expect(copies.length).toBeLessThanOrEqual(7);
    expect(layer.stats.clientTransactions).toBeLessThanOrEqual(1); // only the busy one may linger in Completed
  });
});
