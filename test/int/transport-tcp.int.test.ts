import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { type AnyMessage, DEFAULT_LIMITS, type SipRequest, createResponse } from '../../src/core/sip/index.js';
import { TransportManager, type TransportOptions } from '../../src/core/transport/index.js';

function options(i: number, opts: { transport?: string; rport?: boolean; body?: string } = {}): string {
  const body = opts.body ?? '';
  return (
    `OPTIONS sip:probe${i}@example.com SIP/2.0\r\n` +
    `Via: SIP/2.0/${opts.transport ?? 'TCP'} 10.9.9.9:5060;${opts.rport === false ? '' : 'rport;'}branch=z9hG4bKtcp${i}\r\n` +
    'Max-Forwards: 70\r\n' +
    'From: <sip:a@example.com>;tag=f1\r\n' +
    'To: <sip:b@example.com>\r\n' +
    `Call-ID: tcp-${i}\r\n` +
    `CSeq: ${i + 1} OPTIONS\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** A raw TCP peer that records what it receives and whether the server closed it. */
class Peer {
  data = '';
  closed = false;
  readonly sock: net.Socket;
  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (b) => (this.data += b.toString('utf8')));
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => undefined);
  }
  static connect(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Peer(s)));
      s.once('error', reject);
    });
  }
  write(s: string | Buffer): void {
    this.sock.write(s);
  }
  get localPort(): number {
    return this.sock.localPort!;
  }
}

describe('TCP transport on loopback', () => {
  let tm: TransportManager;
  let port: number;
  let received: AnyMessage[];
  const peers: Peer[] = [];

  async function start(extra: Partial<TransportOptions> = {}): Promise<void> {
    tm = await TransportManager.listen({
      listen: [{ transport: 'tcp', address: '127.0.0.1', port: 0 }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
      ...extra,
    });
    port = tm.listening()[0]!.port;
    received = [];
    tm.onMessage((m) => received.push(m));
  }

  async function peer(): Promise<Peer> {
    const p = await Peer.connect(port);
    peers.push(p);
    return p;
  }

  beforeEach(async () => {
    await start();
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.sock.destroy();
    await tm.close();
  });

  it('hands up a request with its connection and sends the response back on that connection', async () => {
    const p = await peer();
    p.write(options(1));
    await until(() => received.length === 1, 'the request');
    const req = received[0] as SipRequest;
    expect(req.source).toMatchObject({ transport: 'tcp', address: '127.0.0.1', port: p.localPort });
    expect(req.source!.connectionId).toBeGreaterThan(0);
    expect(req.topVia()!.params.get('rport')).toBe(String(p.localPort));
    await tm.sendResponse(createResponse(req, 200), req.source);
    await until(() => p.data.includes('SIP/2.0 200 OK'), 'the response');
    expect(p.data).toContain('Call-ID: tcp-1');
  });

  it('finds the connection from the Via received/rport when no source is given', async () => {
    const p = await peer();
    p.write(options(2));
    await until(() => received.length === 1, 'the request');
    await tm.sendResponse(createResponse(received[0] as SipRequest, 202));
    await until(() => p.data.includes('SIP/2.0 202 Accepted'), 'the response');
    expect(tm.stats.connectionsOpen).toBe(1);
  });

  it('frames many messages sent in one write and a message sent one byte at a time', async () => {
    const p = await peer();
    const batch = Array.from({ length: 20 }, (_, i) => options(i, { body: i % 2 ? `body ${i}\r\n\r\n` : '' }));
    p.write(batch.join(''));
    await until(() => received.length === 20, 'the batch');
    expect(received.map((m) => m.callId)).toEqual(batch.map((_, i) => `tcp-${i}`));
    expect(received[1]!.body.toString()).toBe('body 1\r\n\r\n');

    const one = Buffer.from(options(99, { body: 'x'.repeat(50) }));
    for (let i = 0; i < one.length; i++) {
      p.write(one.subarray(i, i + 1));
      if (i % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => received.length === 21, 'the byte-by-byte message');
    expect(received[20]!.callId).toBe('tcp-99');
    expect(received[20]!.body.toString()).toBe('x'.repeat(50));
  });

  it('answers a double-CRLF ping with a single CRLF pong (RFC 5626)', async () => {
    const p = await peer();
    p.write('\r\n\r\n');
    await until(() => p.data === '\r\n', 'the pong');
    expect(tm.stats.keepAlivePongs).toBe(1);
    p.write(options(3));
    await until(() => received.length === 1, 'the request after the ping');
  });

  it('answers a request without Content-Length with 400 and closes the connection', async () => {
    const p = await peer();
    p.write(options(4).replace('Content-Length: 0\r\n', ''));
    await until(() => p.closed, 'the close');
    expect(p.data).toMatch(/^SIP\/2\.0 400 Bad Request \(missing Content-Length on a stream transport\)\r\n/);
    expect(received).toHaveLength(0);
  });

  it('answers a malformed but framed request with 400 and keeps the connection', async () => {
    const p = await peer();
    p.write(options(5).replace('CSeq: 6 OPTIONS', 'CSeq: 6 INVITE'));
    await until(() => p.data.includes('SIP/2.0 400'), 'the 400');
    expect(p.data).toContain('CSeq method does not match');
    p.write(options(6));
    await until(() => received.length === 1, 'the next request');
    expect(p.closed).toBe(false);
  });

  it('answers a request declaring a body beyond the limit with 513 and closes', async () => {
    const p = await peer();
    p.write(options(7).replace('Content-Length: 0', 'Content-Length: 40000'));
    await until(() => p.closed, 'the close');
    expect(p.data).toMatch(/^SIP\/2\.0 513 Message Too Large/);
  });

  it('answers a header section that never ends with 513 and closes', async () => {
    const p = await peer();
    p.write(`OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKbig\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: big\r\nCSeq: 1 OPTIONS\r\n`);
    const filler = `X-Filler: ${'z'.repeat(1000)}\r\n`;
    for (let i = 0; i < 30 && !p.closed; i++) {
      p.write(filler);
      await new Promise((r) => setImmediate(r));
    }
    await until(() => p.closed, 'the close');
    expect(p.data).toMatch(/^SIP\/2\.0 513 /);
    expect(p.data).toContain('Call-ID: big');
  });

  it('closes a connection that stays idle', async () => {
    await tm.close();
    await start({ tcpIdleTimeoutMs: 200 });
    const p = await peer();
    p.write(options(8));
    await until(() => received.length === 1, 'the request');
    await until(() => p.closed, 'the idle close');
    expect(tm.stats.idleTimeouts).toBe(1);
    expect(tm.stats.connectionsOpen).toBe(0);
  });

  it("does not let a peer sending one byte per 50 ms delay another client's request", async () => {
    const slow = await peer();
    const text = Buffer.from(options(10));
    let sentBytes = 0;
    let stop = false;
    const drip = (async () => {
      while (!stop && sentBytes < text.length) {
        slow.write(text.subarray(sentBytes, sentBytes + 1));
        sentBytes++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 200));
      const fast = await peer();
      fast.write(options(11));
      await until(() => received.length === 1, 'the fast request');
      await tm.sendResponse(createResponse(received[0] as SipRequest, 200), received[0]!.source);
      await until(() => fast.data.includes('SIP/2.0 200'), 'the fast response');
      // The slow message is still incomplete: the fast client was served in the middle of it.
      expect(sentBytes).toBeLessThan(text.length);
      expect(received.map((m) => m.callId)).toEqual(['tcp-11']);
    } finally {
      stop = true;
      await drip;
    }
  });

  it('refuses connections beyond the per-IP cap', async () => {
    await tm.close();
    await start({ maxConnectionsPerIp: 2 });
    const a = await peer();
    const b = await peer();
    await until(() => tm.stats.connectionsOpen === 2, 'two connections');
    const c = await peer();
    await until(() => c.closed, 'the refused connection to close');
    expect(tm.stats.connectionsRejected).toBe(1);
    a.write(options(12));
    b.write(options(13));
    await until(() => received.length === 2, 'requests on the admitted connections');
  });

  it('refuses connections beyond the total cap', async () => {
    await tm.close();
    await start({ maxConnections: 1 });
    const a = await peer();
    await until(() => tm.stats.connectionsOpen === 1, 'one connection');
    const b = await peer();
    await until(() => b.closed, 'the refused connection to close');
    a.write(options(14));
    await until(() => received.length === 1, 'the request on the admitted connection');
    expect(tm.stats.connectionsRejected).toBe(1);
  });

  it('connects out to send a request, reuses the connection, and hands up the response that comes back on it', async () => {
    const serverSide: net.Socket[] = [];
    let got = '';
    const remote = net.createServer((s) => {
      serverSide.push(s);
      s.on('data', (b) => {
        got += b.toString();
        if (got.includes('tcp-21')) {
          s.write('SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKtcp21\r\nFrom: <sip:a@example.com>;tag=f1\r\nTo: <sip:b@example.com>;tag=t\r\nCall-ID: tcp-21\r\nCSeq: 22 OPTIONS\r\nContent-Length: 0\r\n\r\n');
        }
      });
    });
    await new Promise<void>((r) => remote.listen(0, '127.0.0.1', () => r()));
    const rport = (remote.address() as net.AddressInfo).port;
    try {
      const dest = { address: '127.0.0.1', port: rport, transport: 'tcp' as const };
      await Promise.all([tm.send(Buffer.from(options(20)), dest), tm.send(Buffer.from(options(21)), dest)]);
      await until(() => received.length === 1, 'the response');
      expect(serverSide).toHaveLength(1);
      expect(received[0]!.isRequest).toBe(false);
      expect(received[0]!.source).toMatchObject({ transport: 'tcp', address: '127.0.0.1', port: rport });
      // the connection id it came on is the one sends reuse
      await tm.send(Buffer.from(options(22)), { ...dest, connectionId: received[0]!.source!.connectionId! });
      await until(() => got.includes('tcp-22'), 'the third request');
      expect(serverSide).toHaveLength(1);
    } finally {
      for (const s of serverSide) s.destroy();
      await new Promise((r) => remote.close(r));
    }
  });

  it('drops a connection whose peer stops reading instead of queueing without bound', async () => {
    await tm.close();
    await start({ maxWriteBufferBytes: 256 * 1024 });
    const p = await peer();
    p.write(options(40));
    await until(() => received.length === 1, 'the request');
    p.sock.pause(); // the peer stops reading
    const req = received[0] as SipRequest;
    const bulky = createResponse(req, 200, { body: Buffer.alloc(60_000, 0x61), contentType: 'text/plain' });
    let error: unknown;
    for (let i = 0; i < 2000 && error === undefined; i++) {
      tm.sendResponse(bulky, req.source).catch((err: unknown) => (error ??= err));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => error !== undefined, 'the send to fail');
    expect(error).toMatchObject({ code: 'TRANSPORT_PEER_SLOW', retriable: true });
    await until(() => tm.stats.connectionsOpen === 0, 'the connection to be dropped');
  });

  it('fails a send to a closed port with a retriable coded error', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    await expect(tm.send(Buffer.from(options(30)), { address: '127.0.0.1', port: closedPort, transport: 'tcp' })).rejects.toMatchObject({
      code: 'TRANSPORT_CONNECT_FAILED',
      retriable: true,
    });
  });
});
