import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { type AnyMessage, DEFAULT_LIMITS, createResponse, parseMessage } from '../../src/core/sip/index.js';
import { TransportManager } from '../../src/core/transport/index.js';

function register(opts: { via?: string; extra?: string; cseq?: string } = {}): string {
  return (
    'REGISTER sip:example.com SIP/2.0\r\n' +
    `Via: ${opts.via ?? 'SIP/2.0/UDP 10.1.2.3:5060;rport;branch=z9hG4bKudp1'}\r\n` +
    'Max-Forwards: 70\r\n' +
    'From: <sip:alice@example.com>;tag=a1\r\n' +
    'To: <sip:alice@example.com>\r\n' +
    'Call-ID: udp-1@10.1.2.3\r\n' +
    `CSeq: ${opts.cseq ?? '1 REGISTER'}\r\n` +
    (opts.extra ?? '') +
    'Content-Length: 0\r\n\r\n'
  );
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe.each([
  { mode: 'the main thread', ioThread: false },
  { mode: 'an I/O thread', ioThread: true },
])('UDP transport on loopback, datagrams on $mode', ({ ioThread }) => {
  let tm: TransportManager;
  let client: dgram.Socket;
  let received: AnyMessage[];
  let replies: string[];
  let port: number;

  beforeEach(async () => {
    tm = await TransportManager.listen({
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0, ioThread }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
    });
    port = tm.listening()[0]!.port;
    received = [];
    tm.onMessage((m) => received.push(m));
    replies = [];
    client = dgram.createSocket('udp4');
    client.on('message', (b) => replies.push(b.toString('utf8')));
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  });

  afterEach(async () => {
    await tm.close();
    client.close();
  });

  const send = (text: string | Buffer) => client.send(typeof text === 'string' ? Buffer.from(text) : text, port, '127.0.0.1');

  it('reports the bound port and stamps received and rport before handing the request up', async () => {
    expect(port).toBeGreaterThan(0);
    send(register());
    await until(() => received.length === 1, 'the request');
    const msg = received[0]!;
    expect(msg.source).toMatchObject({ address: '127.0.0.1', port: client.address().port, transport: 'udp', local: { address: '127.0.0.1', port } });
    const via = msg.topVia()!;
    expect(via.params.get('received')).toBe('127.0.0.1');
    expect(via.params.get('rport')).toBe(String(client.address().port));
  });

  it('sends a response to received:rport, not to the sent-by the client claimed', async () => {
    send(register());
    await until(() => received.length === 1, 'the request');
    const req = received[0]!;
    if (!req.isRequest) throw new Error('expected a request');
    await tm.sendResponse(createResponse(req, 200));
    await until(() => replies.length === 1, 'the response');
    expect(replies[0]).toMatch(/^SIP\/2\.0 200 OK\r\n/);
    expect(replies[0]).toContain(`;rport=${client.address().port}`);
    expect(tm.stats.messagesSent).toBe(1);
  });

  it('answers a 30 KB request with 513 Message Too Large and does not hand it up', async () => {
    const big = register({ extra: `X-Padding: ${'p'.repeat(30_000)}\r\n` });
    expect(Buffer.byteLength(big)).toBeGreaterThan(30_000);
    send(big);
    await until(() => replies.length === 1, 'the 513');
    expect(replies[0]).toMatch(/^SIP\/2\.0 513 Message Too Large \(message too large \(\d+ bytes, limit 16384\)\)\r\n/);
    expect(replies[0]).toContain('Call-ID: udp-1@10.1.2.3');
    expect(received).toHaveLength(0);
  });

  it('answers a malformed request with 400 whose reason phrase names the problem', async () => {
    send(register().replace('Max-Forwards: 70', 'Max-Forwards: many'));
    await until(() => replies.length === 1, 'the 400');
    expect(replies[0]).toMatch(/^SIP\/2\.0 400 Bad Request \([^\r]*Max-Forwards[^\r]*\)\r\n/);
    expect(received).toHaveLength(0);
  });

  it('drops (and counts) a request whose CSeq or lower Via is malformed: no answer could be well-formed', async () => {
    send(register({ cseq: 'one REGISTER' }));
    send(register({ via: 'SIP/2.0/UDP 10.1.2.3:5060;rport;branch=z9hG4bKudp2, SIP2.0/TCP broken' }));
    await until(() => tm.stats.malformed === 2, 'both inputs to be counted');
    // A well-formed request sent after them is answered first: nothing was queued for the others.
    send(register());
    await until(() => received.length === 1, 'the well-formed request');
    expect(replies).toHaveLength(0);
    expect(tm.stats.errorsAnswered).toBe(0);
  });

  it('answers an unsupported SIP version with 505', async () => {
    send(register().replace('REGISTER sip:example.com SIP/2.0', 'REGISTER sip:example.com SIP/3.0'));
    await until(() => replies.length === 1, 'the 505');
    expect(replies[0]).toMatch(/^SIP\/2\.0 505 /);
  });

  it('drops input that cannot be answered, then still serves the next request', async () => {
    send(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a]));
    send('SIP/2.0 200 OK\r\nnot a header\r\n\r\n');
    await until(() => tm.stats.malformed === 2, 'both inputs to be seen');
    send(register());
    await until(() => received.length === 1, 'the valid request');
    expect(replies).toHaveLength(0);
    expect(tm.stats.errorsAnswered).toBe(0);
  });

  it('ignores CRLF keep-alive datagrams', async () => {
    send('\r\n\r\n');
    send(register());
    await until(() => received.length === 1, 'the request');
    expect(tm.stats.malformed).toBe(0);
  });

  it('sends requests to a UDP destination', async () => {
    await tm.send(Buffer.from(register()), { address: '127.0.0.1', port: client.address().port, transport: 'udp' });
    await until(() => replies.length === 1, 'the request at the peer');
    expect(replies[0]).toMatch(/^REGISTER /);
  });

  it('fails to bind a port in use with a coded, non-retriable error', async () => {
    await expect(
      TransportManager.listen({ listen: [{ transport: 'udp', address: '127.0.0.1', port, ioThread }], limits: DEFAULT_LIMITS, logger: pino({ level: 'silent' }) }),
    ).rejects.toMatchObject({ code: 'TRANSPORT_LISTEN_FAILED', retriable: false });
  });
});

describe('UDP on an I/O thread', () => {
  let tm: TransportManager;
  let client: dgram.Socket;
  let port: number;
  const got: AnyMessage[] = [];
  const replies: string[] = [];

  beforeEach(async () => {
    got.length = 0;
    replies.length = 0;
    tm = await TransportManager.listen({
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0, ioThread: true }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
    });
    tm.onMessage((m) => got.push(m));
    port = tm.listening()[0]!.port;
    client = dgram.createSocket('udp4');
    client.on('message', (b) => replies.push(b.toString()));
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  });

  afterEach(async () => {
    await tm.close();
    client.close();
  });

  it('hands up a burst of datagrams in the order they arrived, each with its own bytes', async () => {
    for (let i = 0; i < 200; i++) client.send(Buffer.from(register({ cseq: `${i + 1} REGISTER` })), port, '127.0.0.1');
    await until(() => got.length === 200, 'all 200 requests');
    expect(got.map((m) => m.get('CSeq'))).toEqual(Array.from({ length: 200 }, (_, i) => `${i + 1} REGISTER`));
    // Each message owns its datagram's bytes: none is a view onto a shared batch.
    const wires = got.map((m) => m.layout!.bytes);
    expect(new Set(wires.map((w) => w.buffer)).size).toBe(200);
    for (const w of wires) expect(w.byteLength).toBe(w.buffer.byteLength);
  });

  it('sends the datagrams of one turn in the order they were given', async () => {
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < 100; i++) {
      sends.push(tm.send(Buffer.from(register({ cseq: `${i + 1} REGISTER` })), { address: '127.0.0.1', port: client.address().port, transport: 'udp' }));
    }
    await Promise.all(sends);
    await until(() => replies.length === 100, 'all 100 at the peer');
    expect(replies.map((r) => /CSeq: (\d+)/.exec(r)![1])).toEqual(Array.from({ length: 100 }, (_, i) => String(i + 1)));
    expect(tm.stats.messagesSent).toBe(100);
  });

  it('rejects just the send the kernel refuses; the sends around it go out', async () => {
    const to = { address: '127.0.0.1', port: client.address().port, transport: 'udp' as const };
    // Larger than any UDP datagram can be: the kernel answers EMSGSIZE.
    const results = await Promise.allSettled([
      tm.send(Buffer.from(register()), to),
      tm.send(Buffer.alloc(70_000, 0x41), to),
      tm.send(Buffer.from(register({ cseq: '2 REGISTER' })), to),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'TRANSPORT_SEND_FAILED' });
    expect(tm.stats.sendErrors).toBe(1);
    await until(() => replies.length === 2, 'the two good datagrams');
  });

  it('drops what arrives while the main thread is a full backlog behind, counts it, and goes on', async () => {
    await tm.close();
    tm = await TransportManager.listen({
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0, ioThread: true, ioThreadMaxBacklog: 10 }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
    });
    tm.onMessage((m) => got.push(m));
    port = tm.listening()[0]!.port;
    // A peer in another process sends 100 requests while this thread is blocked (spawnSync): the
    // I/O thread hands over 10 and must drop the other 90 rather than queue them.
    const peer = spawnSync(
      process.execPath,
      [
        '-e',
        `const d = require('node:dgram').createSocket('udp4'); let n = 0;
         for (let i = 0; i < 100; i++) d.send(Buffer.from(process.argv[1].replace('CSEQ', String(i + 1))), ${port}, '127.0.0.1', () => { if (++n === 100) d.close(); });`,
        register({ cseq: 'CSEQ REGISTER' }),
      ],
      { encoding: 'utf8' },
    );
    expect(peer.status, peer.stderr).toBe(0);
    await until(() => got.length === 10 && tm.stats.udpBacklogDrops === 90, 'the 10 handed over and the 90 dropped');
    expect(got.map((m) => m.get('CSeq'))).toEqual(Array.from({ length: 10 }, (_, i) => `${i + 1} REGISTER`));
    // Once caught up, the socket takes requests again.
    client.send(Buffer.from(register({ cseq: '101 REGISTER' })), port, '127.0.0.1');
    await until(() => got.length === 11, 'a request after the backlog drained');
    expect(got[10]!.get('CSeq')).toBe('101 REGISTER');
  });

  it('refuses sends once closed, with a transport error', async () => {
    await tm.close();
    await expect(tm.send(Buffer.from(register()), { address: '127.0.0.1', port: client.address().port, transport: 'udp' })).rejects.toMatchObject({
      code: 'TRANSPORT_CLOSED',
    });
    // The port is free again: the thread's socket is closed.
    const again = await TransportManager.listen({ listen: [{ transport: 'udp', address: '127.0.0.1', port, ioThread: true }], limits: DEFAULT_LIMITS, logger: pino({ level: 'silent' }) });
    expect(again.listening()[0]!.port).toBe(port);
    tm = again;
  });
});

describe('logging of malformed input', () => {
  it('logs malformed input once per source per interval, not once per datagram', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const tm = await TransportManager.listen({ listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }], limits: DEFAULT_LIMITS, logger });
    const client = dgram.createSocket('udp4');
    try {
      for (let i = 0; i < 5; i++) client.send(Buffer.from(`garbage ${i}\r\n\r\n`), tm.listening()[0]!.port, '127.0.0.1');
      await until(() => tm.stats.malformed === 5, 'all five datagrams');
      expect(lines.filter((l) => l.includes('malformed SIP message'))).toHaveLength(1);
    } finally {
      client.close();
      await tm.close();
    }
  });
});

describe('UDP over IPv6 loopback', () => {
  it.each([false, true])('stamps an IPv6 source and answers it at received:rport (I/O thread: %s)', async (ioThread) => {
    const tm = await TransportManager.listen({ listen: [{ transport: 'udp', address: '::1', port: 0, ioThread }], limits: DEFAULT_LIMITS, logger: pino({ level: 'silent' }) });
    const got: AnyMessage[] = [];
    tm.onMessage((m) => got.push(m));
    const client = dgram.createSocket('udp6');
    const replies: string[] = [];
    client.on('message', (b) => replies.push(b.toString()));
    try {
      await new Promise<void>((r) => client.bind(0, '::1', () => r()));
      client.send(Buffer.from(register({ via: 'SIP/2.0/UDP [2001:db8::5]:5060;rport;branch=z9hG4bKv6' })), tm.listening()[0]!.port, '::1');
      await until(() => got.length === 1, 'the request');
      const req = got[0]!;
      if (!req.isRequest) throw new Error('expected a request');
      expect(req.topVia()!.params.get('received')).toBe('::1');
      await tm.sendResponse(createResponse(req, 200), req.source);
      await until(() => replies.length === 1, 'the response');
      expect(replies[0]).toContain(`rport=${client.address().port};branch=z9hG4bKv6;received=::1`);
    } finally {
      client.close();
      await tm.close();
    }
  });
});

describe('SIP trace', () => {
  it('logs messages in and out but never the credentials they carry', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const tm = await TransportManager.listen({ listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }], limits: DEFAULT_LIMITS, logger, trace: true });
    const got: AnyMessage[] = [];
    tm.onMessage((m) => got.push(m));
    const client = dgram.createSocket('udp4');
    try {
      const secret = 'response="6629fae49393a05397450978507c4ef1"';
      const text = register({
        extra:
          `Authorization: Digest username="alice", realm="example.com", nonce="abc",\r\n  uri="sip:example.com", ${secret}\r\n` +
          `proxy-authorization: Digest username="alice", ${secret}\r\n`,
      });
      client.send(Buffer.from(text), tm.listening()[0]!.port, '127.0.0.1');
      await until(() => got.length === 1, 'the request');
      const req = got[0]!;
      if (!req.isRequest) throw new Error('expected a request');
      await tm.sendResponse(createResponse(req, 200));
      const traced = lines.filter((l) => l.includes('"sip"'));
      expect(traced).toHaveLength(2);
      expect(traced[0]).toContain('REGISTER sip:example.com SIP/2.0');
      expect(traced[0]).toContain('Authorization: <redacted>');
      expect(traced[0]).toContain('proxy-authorization: <redacted>');
      expect(traced[1]).toContain('SIP/2.0 200 OK');
      expect(lines.join('\n')).not.toContain('6629fae49393a05397450978507c4ef1');
      expect(lines.join('\n')).not.toContain('nonce=');
    } finally {
      client.close();
      await tm.close();
    }
  });
});

describe('a parsed response is handed up with its source', () => {
  it('delivers responses without touching their Via', async () => {
    const tm = await TransportManager.listen({
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
    });
    const got: AnyMessage[] = [];
    tm.onMessage((m) => got.push(m));
    const client = dgram.createSocket('udp4');
    try {
      const ringing =
        'SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.1.2.3:5060;rport;branch=z9hG4bKudp1\r\n' +
        'From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: r-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n';
      expect(parseMessage(Buffer.from(ringing)).ok).toBe(true);
      client.send(Buffer.from(ringing), tm.listening()[0]!.port, '127.0.0.1');
      await until(() => got.length === 1, 'the response');
      expect(got[0]!.isRequest).toBe(false);
      expect(got[0]!.topVia()!.params.get('rport')).toBeNull();
    } finally {
      client.close();
      await tm.close();
    }
  });
});
